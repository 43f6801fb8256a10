"""musicnn's whole command: `mvfx extract -e musicnn,musicnn_tags -j 1`, x real time per core, on one 10-minute track
and on a corpus of six (an hour), start-up, decoding and the store included.

The track is the real music of ../shared/data/music (the four tracks, mono, 44.1 kHz), looped to 10 minutes and
encoded once as AAC with mvfx's own decoder and encoder, as
``benchmarks/music_excerpts`` makes its corpus (cached under work/); the corpus holds six links to it. Each run is one `mvfx` process with a new
store, timed from outside: wall seconds, and the CPU seconds and peak memory the kernel counts for it. Per core, by
CPU: media seconds per CPU second; by wall: media seconds per wall second per core of the machine. The start-up (about
3.7 s of CPU, two thirds of it imports) is paid once per command, so the corpus shows what a researcher's run costs.
Left out, with a note, when ../shared/data/music is absent.
"""
from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.memory import peak_of
from benchmarks.music_excerpts import MUSIC, SAMPLE_RATE, TRACKS
from mvfx.media.decode import AudioSpec, decode
from mvfx.media.encode import write_mp4
from mvfx.media.probe import probe

TRACK_S = 600.0
CORPUS_TRACKS = 6
GOAL = 50.0  # x real time per core


def ten_minute_track(path: Path) -> Path:
    """``path``: the real tracks, mono, one after another and looped to ``TRACK_S`` seconds, as AAC (made once)."""
    if path.exists():
        return path
    spec = AudioSpec(SAMPLE_RATE)
    music = np.concatenate([decode(probe(str(MUSIC / f"{stem}.ogg")), {spec}, set()).audio[spec] for stem in TRACKS])
    samples = int(TRACK_S * SAMPLE_RATE)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.mp4")
    write_mp4(partial, None, 25, np.tile(music, samples // len(music) + 1)[None, :samples], SAMPLE_RATE)
    partial.rename(path)
    return path


def _corpora(work: Path) -> dict[str, tuple[Path, float]]:
    """label -> (folder, media seconds): one track, and ``CORPUS_TRACKS`` links to it."""
    track = ten_minute_track(work / "musicnn" / "ten_minutes.mp4")
    one, hour = work / "musicnn" / "one", work / "musicnn" / "hour"
    for folder, count in ((one, 1), (hour, CORPUS_TRACKS)):
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            link = folder / f"track_{k}.mp4"
            if not link.exists():
                link.hardlink_to(track)
    return {"one 10-minute track": (one, TRACK_S), f"{CORPUS_TRACKS} x 10 minutes": (hour, CORPUS_TRACKS * TRACK_S)}


def bench_musicnn(results: dict, work: Path, runs: int, cores: int) -> None:
    if not MUSIC.exists():
        results["musicnn"] = {"skipped": f"{MUSIC} is absent"}
        return
    mvfx = str(Path(sys.executable).parent / "mvfx")
    store = work / "musicnn" / "store.zarr"
    rows = results["musicnn"] = {}
    for label, (corpus, media) in _corpora(work).items():
        measured = []
        for _ in range(runs):
            shutil.rmtree(store, ignore_errors=True)
            measured.append(peak_of([mvfx, "extract", str(corpus), "--store", str(store), "-e", "musicnn,musicnn_tags",
                                     "-j", "1"]))
        cpu, wall = (statistics.median(run[key] for run in measured) for key in ("cpu_s", "wall_s"))
        rows[label] = {"media_s": media, "runs": measured, "cpu_s": cpu, "wall_s": wall,
                       "per_core_by_cpu": media / cpu, "per_core_by_wall": media / wall / cores,
                       "peak_gib": max(run["peak_rss_gib"] for run in measured)}
        print(f"musicnn {label}: {media / cpu:.1f}x real time per core by CPU, {media / wall / cores:.1f}x by wall",
              flush=True)


def markdown(musicnn: dict) -> list[str]:
    if "skipped" in musicnn:
        return ["", f"musicnn's command: not measured ({musicnn['skipped']})."]
    lines = ["", f"| `mvfx extract -e musicnn,musicnn_tags -j 1` (goal {GOAL:.0f}x per core) | CPU s | wall s | per core, "
             "by CPU | per core, by wall | peak MiB |", "|---|---|---|---|---|---|"]
    for label, row in musicnn.items():
        lines.append(f"| {label} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | {row['per_core_by_cpu']:.1f}x | "
                     f"{row['per_core_by_wall']:.1f}x | {row['peak_gib'] * 1024:.0f} |")
    return lines
