"""`mvfx store report`: a store, its extractors, failures and a sample of its clips as a static HTML site.

    DIR/index.html               provenance, extractors, counts, clips with a page
    DIR/failures.html            every failure (up to MAX_FAILURE_ROWS), sortable and filterable by stage and extractor
    DIR/failures.csv             every failure
    DIR/clips/<clip>.html        one page per chosen clip: clips-table record, failures, a time line per extractor,
                                 frames and waveform when the source file is still there
    DIR/clips/<clip>/*.png       its pictures
    DIR/static/                  report.css, table.js

Which clips get a page: by default ``DEFAULT_CLIPS`` sampled deterministically (the clips whose sha1(clip_id) is
smallest, so a clip keeps its page as the store grows) plus every clip with a failure, up to
``DEFAULT_FAILED_CLIPS`` of those; or exactly the clips asked for. The rest of the report reads only tables
(clips, failures, index attributes), so a store of 100,000 clips costs little more than a small one.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.reports import figures
from mvfx.reports.preview import preview
from mvfx.reports.site import ReportResult, Site, file_name, human_bytes
from mvfx.stores.base import FeatureStore

DEFAULT_CLIPS = 50
DEFAULT_FAILED_CLIPS = 50
MAX_FAILURE_ROWS = 20_000  # rows of failures.html; failures.csv has them all
MAX_LISTED = 200  # damaged clips and streams that end early listed on the index


def _sample_key(clip_id: str) -> str:
    return hashlib.sha1(clip_id.encode("utf-8", "surrogateescape")).hexdigest()


def select_clips(all_ids: Sequence[str], failed_ids: Sequence[str], sample: int | None = DEFAULT_CLIPS,
                 failed: int = DEFAULT_FAILED_CLIPS, given: Sequence[str] = ()) -> tuple[list[str], str]:
    """The clips that get a page, in clip-id order, and a sentence saying how they were chosen.

    ``given``: exactly those (each must be a clip of the store). Otherwise ``sample`` clips (None: all) with the
    smallest sha1(clip_id), deterministic and stable as clips are added, plus up to ``failed`` clips with a
    failure (in clip-id order)."""
    known = set(all_ids) | set(failed_ids)
    if given:
        unknown = [c for c in given if c not in known]
        if unknown:
            raise MvfxError(f"--clip {unknown[0]!r}: no such clip in the store" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
        chosen = sorted(dict.fromkeys(given))
        return chosen, f"{len(chosen)} clip{'s' * (len(chosen) != 1)} asked for (--clip)"
    ids = sorted(set(all_ids))
    picked = ids if sample is None else sorted(ids, key=_sample_key)[:max(sample, 0)]
    with_failure = [c for c in sorted(set(failed_ids)) if c not in set(picked)][:max(failed, 0)]
    chosen = sorted(set(picked) | set(with_failure))
    if sample is None:
        how = f"every clip ({len(picked)})"
    else:
        how = f"{len(picked)} of {len(ids)} clips sampled deterministically (smallest sha1 of the clip id; --clips {sample})"
    failing = len(set(failed_ids))
    if failing:
        how += f", plus {len(with_failure)} more with a failure"
        already = len(set(failed_ids) & set(picked))
        shown = already + len(with_failure)
        how += f" ({shown} of {failing} clips with a failure have a page; --failed-clips {failed})"
    return chosen, how


def _records(clips: pd.DataFrame) -> dict[str, dict]:
    return {str(r["clip_id"]): r for r in clips.to_dict("records")}


def _weights(attrs: dict) -> tuple[str, str]:
    """(kind, hash) of an extractor's weights mark: none, random, or a file's sha256."""
    mark = str(attrs.get("weights", "none"))
    if mark in ("none", "random", ""):
        return mark or "none", ""
    files = attrs.get("weights_files") or {}
    return ("pretrained" + (f" ({', '.join(files)})" if isinstance(files, dict) and files else "")), mark


def _time_grid(grid) -> str:
    if not isinstance(grid, dict):
        return "-" if grid is None else str(grid)
    parts = [str(grid.get("kind", ""))]
    if grid.get("window_s") is not None:
        parts.append(f"window {float(grid['window_s']):.3g} s")
    if grid.get("hop_s") is not None:
        parts.append(f"hop {float(grid['hop_s']):.3g} s")
    parts += [f"{k} {v}" for k, v in grid.items() if k not in ("kind", "window_s", "hop_s")]
    return ", ".join(p for p in parts if p)


def _int(value) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if math.isfinite(number) else 0


def _text(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


def _clip_rows(ids: list[str], records: dict[str, dict], failures: pd.DataFrame, pages: dict[str, str]) -> list[dict]:
    counts = failures["clip_id"].astype(str).value_counts().to_dict() if len(failures) else {}
    rows = []
    for clip_id in ids:
        record = records.get(clip_id, {})
        rows.append({"clip_id": clip_id, "href": pages.get(clip_id), "duration_s": record.get("duration_s"),
                     "status": _text(record.get("status")) or "not in the clips table",
                     "damaged": _int(record.get("damaged_packets")), "failures": counts.get(clip_id, 0)})
    return rows


def write_store_report(store: FeatureStore, out: str | Path, sample: int | None = DEFAULT_CLIPS, failed: int = DEFAULT_FAILED_CLIPS,
                       clip_ids: Sequence[str] = (), media: bool = True,
                       progress: Callable[[int, int, str], None] | None = None) -> ReportResult:
    """Write the report of ``store`` into the folder ``out`` (new, empty, or a report written before)."""
    started = time.perf_counter()
    summary = store.summary()
    attrs = store.store_attrs()
    clips = store.clips()
    failures = store.failures()
    records = _records(clips)
    failed_ids = failures["clip_id"].astype(str).tolist() if len(failures) else []
    chosen, how = select_clips(list(records), failed_ids, sample, failed, clip_ids)
    pages = {clip_id: f"clips/{file_name(clip_id)}.html" for clip_id in chosen}
    site = Site(out, f"store {store.location}", [("Overview", "index.html"), ("Failures", "failures.html")], started)
    notes: list[str] = []

    extractors = []
    for name, numbers in summary["extractors"].items():
        a = store.attrs(name)
        kind, digest = _weights(a)
        extractors.append({"name": name, "version": numbers["version"], "dim": numbers["dim"], "weights_kind": kind,
                           "weights_hash": digest, "clips": numbers["clips"], "rows": numbers["rows"],
                           "time_grid": _time_grid(a.get("time_grid")), "modality": a.get("modality", ""),
                           "feature_names": a.get("feature_names") or None})

    statuses = clips["status"].fillna("").astype(str).replace("", "unknown").value_counts().to_dict() if len(clips) else {}
    damaged = []
    if "damaged_packets" in clips:
        hit = clips[pd.to_numeric(clips["damaged_packets"], errors="coerce").fillna(0) > 0]
        damaged = [{"clip_id": str(r.clip_id), "href": pages.get(str(r.clip_id)), "packets": _int(r.damaged_packets),
                    "spans": _text(r.damaged_spans)} for r in hit.head(MAX_LISTED).itertuples()]
    early = []
    if "missing_spans" in clips:
        hit = clips[clips["missing_spans"].fillna("").astype(str) != ""]
        early = [{"clip_id": str(r.clip_id), "href": pages.get(str(r.clip_id)), "spans": _text(r.missing_spans)}
                 for r in hit.head(MAX_LISTED).itertuples()]

    provenance = {"store": store.location, "format": f"{attrs.get('format', '?')} version {attrs.get('format_version', '?')}",
                  "mvfx_version": attrs.get("mvfx_version", "?"), "created": attrs.get("created", "?"),
                  "updated": attrs.get("updated", ""), "commit": store.commit_id}
    counts = {"clips": summary["clips"], "failures": summary["failures"], "damaged": summary["damaged_clips"],
              "failed_clips": len(set(failed_ids)), "statuses": statuses}

    # failures: the table page (capped) and the whole list as CSV
    failures.to_csv(site.path("failures.csv"), index=False)
    shown = failures.head(MAX_FAILURE_ROWS)
    failure_rows = [{**{k: _text(v) for k, v in row.items()}, "href": pages.get(str(row["clip_id"]))} for row in shown.to_dict("records")]
    site.page("failures.html", "failures.html", provenance=provenance, failures=failure_rows, total=len(failures),
              stages=sorted({r["stage"] for r in failure_rows}), extractors=sorted({r["extractor"] for r in failure_rows}))

    # clip pages
    unseen = 0
    for k, clip_id in enumerate(chosen):
        if progress:
            progress(k, len(chosen), clip_id)
        unseen += not _clip_page(site, store, clip_id, records.get(clip_id), failures, pages[clip_id], extractors, media)
    if progress:
        progress(len(chosen), len(chosen), "")
    if media and unseen:
        notes.append(f"{unseen} of {len(chosen)} clip pages show no frames or waveform (source file gone, unreadable, "
                     "or the clip is not in the clips table); each page says why")

    site.page("store_index.html", "index.html", provenance=provenance, counts=counts, extractors=extractors,
              clips=_clip_rows(chosen, records, failures, pages), how=how, damaged=damaged, early=early, max_listed=MAX_LISTED)
    return site.result(notes)


def _clip_page(site: Site, store: FeatureStore, clip_id: str, record: dict | None, failures: pd.DataFrame, relpath: str,
               extractors: list[dict], media: bool) -> bool:
    """Write one clip's page and pictures; True when it shows something of the source file."""
    folder = relpath.removesuffix(".html")  # clips/<name>: the page's pictures
    local = folder.split("/", 1)[1]  # the same, relative to the page
    mine = failures[failures["clip_id"].astype(str) == clip_id] if len(failures) else failures
    failed_here = {str(r["extractor"]): str(r["message"]) for r in mine.to_dict("records")}
    timelines = []
    for e in extractors:
        name = e["name"]
        entry = {"name": name, "image": None, "alt": "", "rows": 0, "note": ""}
        if clip_id not in store.index(name):
            entry["note"] = ("failed: " + failed_here[name]) if name in failed_here else (
                "failed with the whole clip: " + failed_here["*"] if "*" in failed_here else "not extracted for this clip")
            timelines.append(entry)
            continue
        values, times = store.read(name, clip_id)
        entry["rows"] = len(values)
        if len(values) == 0:
            entry["note"] = "no rows (the clip is shorter than one window)"
        else:
            image = f"{local}/{file_name(name)}.png"
            entry["alt"] = figures.timeline_png(site.image(f"{folder}/{file_name(name)}.png"), values, times, e["feature_names"],
                                                f"{name} v{e['version']} of {clip_id}")
            entry["image"] = image
            if e["weights_kind"] == "random":
                entry["note"] = "weights: random (a dry run; these features mean nothing)"
        timelines.append(entry)

    look = {"thumbnails": None, "waveform": None, "notes": []}
    if record is None:
        look["notes"].append("this clip is not in the clips table (it failed before it was probed)")
    elif not media:
        look["notes"].append("frames and waveform were not drawn (--no-media)")
    else:
        seen = preview(record)
        look["notes"] += seen.notes
        if seen.images:
            look["thumbnails"] = {"src": f"{local}/frames.png", "alt": figures.thumbnails_png(
                site.image(f"{folder}/frames.png"), seen.images, seen.instants, f"frames of {clip_id}")}
        if seen.audio is not None:
            look["waveform"] = {"src": f"{local}/waveform.png", "alt": figures.waveform_png(
                site.image(f"{folder}/waveform.png"), seen.audio, seen.sample_rate, f"audio of {clip_id}")}
    details = _details(record) if record is not None else []
    site.page("clip.html", relpath, clip_id=clip_id, details=details, failures=[{k: _text(v) for k, v in r.items()} for r in mine.to_dict("records")],
              timelines=timelines, look=look)
    return bool(look["thumbnails"] or look["waveform"])


def _details(record: dict) -> list[tuple[str, str]]:
    """The clips-table record as (label, text) rows."""
    duration = record.get("duration_s")
    size = record.get("size_bytes")
    rows = [("source file", _text(record.get("path")) or "-"),
            ("status", _text(record.get("status")) or "-"),
            ("duration", f"{float(duration):.2f} s" if _is_number(duration) else "-"),
            ("size", f"{human_bytes(float(size))} ({_int(size)} bytes)" if _is_number(size) else "-")]
    if record.get("has_video"):
        rows.append(("video", f"{_text(record.get('video_codec'))}, {_int(record.get('width'))}x{_int(record.get('height'))}, "
                              f"{float(record.get('fps') or 0):.3g} fps"))
    else:
        rows.append(("video", "none"))
    if record.get("has_audio"):
        rows.append(("audio", f"{_text(record.get('audio_codec'))}, {_int(record.get('sample_rate'))} Hz, {_int(record.get('channels'))} channels"))
    else:
        rows.append(("audio", "none"))
    packets = _int(record.get("damaged_packets"))
    rows.append(("damage", f"{packets} undecodable packets skipped at {_text(record.get('damaged_spans'))} s" if packets else "none"))
    if _text(record.get("missing_spans")):
        rows.append(("streams ending early", f"{record['missing_spans']} s has no decodable data"))
    rows.append(("content hash", _text(record.get("content_hash")) or "-"))
    return rows


def _is_number(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


__all__ = ["DEFAULT_CLIPS", "DEFAULT_FAILED_CLIPS", "select_clips", "write_store_report"]
