"""Corpus scale: every store and planning step on synthetic stores of 10k and 100k clips (`python -m benchmarks.run scale`).

A store of N clips holds 3 feature sets of 20 rows a clip: colour (32 dims) and shots (2), with their real
descriptions so that a real `run_extract` can plan a resume against them, and an imported set (8 dims). No
decoding: the clips are written through the writer's own paths. The bulk of each store is appended the way
`store import-features` writes (``writer.append``); on top, 256 more clips go the way `mvfx extract` writes
them (each (clip, extractor) staged as a part by a worker, committed by the writer, then compacted), so those
timings are those of a batch landing in a store of N clips.

Each size runs in its own process, so its peak memory is its own. From the two sizes, each operation's
exponent b (time ~ N^b) is fitted and the time at 1M clips extrapolated.
"""
from __future__ import annotations

import csv
import json
import math
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROWS = 20
IMPORTED_DIM = 8
BATCH = 256
READS = 100
SIZES = (10_000, 100_000)
GOALS = {"open": 1.0, "read one clip": 0.020, "commit 256 parts": 0.5, "plan resume (manifest)": 10.0, "verify": 180.0}


def _clip_id(k: int) -> str:
    """Ids in the order a corpus is discovered and written (sorted), in folders of 100 clips."""
    return f"artist_{k // 100:05d}/clip_{k:07d}"


def _record(k: int) -> dict:
    return {"clip_id": _clip_id(k), "path": f"/corpus/{_clip_id(k)}.mp4", "status": "ok",
            "content_hash": f"{k:064x}", "size_bytes": 1_000_000 + k, "duration_s": 10.0, "has_video": True,
            "has_audio": True, "fps": 25.0, "width": 640, "height": 360, "video_codec": "h264", "sample_rate": 44100,
            "channels": 2, "audio_codec": "aac"}


def _block(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.arange(ROWS) * 0.5
    return rng.standard_normal((ROWS, dim), dtype=np.float32), np.stack([starts, starts + 0.5], axis=1)


def _descriptions() -> list[dict]:
    from mvfx.extractors import create
    from mvfx.pipeline.plan import provenance

    imported = {"extractor": "imported_va", "version": "imported", "modality": "imported", "dim": IMPORTED_DIM,
                "value_shape": [IMPORTED_DIM], "feature_names": [f"f{i}" for i in range(IMPORTED_DIM)], "nan_allowed": True,
                "weights": "none", "config": {"hop_s": 0.5}, "time_grid": {"kind": "window", "window_s": 0.5, "hop_s": 0.5}}
    return [provenance(create("colour"), False), provenance(create("shots"), False), imported]


def _timed(fn) -> float:
    return _timed_value(fn)[0]


def _timed_value(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(n: int, work: Path) -> dict:
    """Every operation on a fresh store of ``n`` clips; seconds (and the client's memory)."""
    from mvfx.pipeline.run import run_extract
    from mvfx.stores import open_store, open_writer
    from mvfx.stores.exchange import export_hdf5

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store = work / "scale.zarr"
    rng = np.random.default_rng(0)
    descriptions = _descriptions()
    out: dict[str, float] = {}

    def build() -> None:
        with open_writer(store) as writer:
            for d in descriptions:
                writer.register_extractor(d)
            for start in range(0, n, BATCH):
                ks = range(start, min(n, start + BATCH))
                for d in descriptions:
                    writer.append(d["extractor"], [(_clip_id(k), *_block(rng, d["dim"])) for k in ks])
                for k in ks:
                    writer.set_clip(_record(k))
            writer.checkpoint()

    out["build (append, import path)"] = _timed(build)
    extra = range(n, n + BATCH)
    with open_writer(store) as writer:
        for d in descriptions:  # a run loads the index while planning (timed as "open" below), not per commit
            writer.done(d["extractor"])
        staging = writer.staging()
        staged = []
        out["stage 256 clips x 3 sets"] = _timed(lambda: staged.extend(
            staging.stage(d["extractor"], _clip_id(k), *_block(rng, d["dim"]), "float32", _record(k))
            for k in extra for d in descriptions))

        def commit() -> None:
            for part in staged:
                writer.commit(part)
            for k in extra:
                writer.set_clip(_record(k))

        out["commit 256 parts"] = _timed(commit)
        out["checkpoint (tables)"] = _timed(writer.checkpoint)
        out["compact 256 clips x 3 sets"] = _timed(writer.compact)
    n_all = n + BATCH

    def open_and_list():  # what every reader does first: open, and list each feature set's clips (loads the index)
        opened = open_store(store)
        listed = [opened.clip_ids(d["extractor"]) for d in descriptions]
        return opened, listed[0]

    out["open"], (s, ids) = _timed_value(open_and_list)
    picks = random.Random(0).sample(ids, READS)
    reads = []
    for clip_id in picks:
        start = time.perf_counter()
        s.read("colour", clip_id)
        reads.append(time.perf_counter() - start)
    out["read one clip"] = statistics.median(reads)
    out["info"] = _timed(lambda: open_store(store).summary())
    problems: list[str] = []
    out["verify"] = _timed(lambda: problems.extend(open_store(store).verify()))
    assert not problems, problems[:3]
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "path"])
        w.writerows([_clip_id(k), _record(k)["path"]] for k in range(n_all))
    out["plan resume (manifest)"], summary = _timed_value(
        lambda: run_extract(str(manifest), str(store), ["colour", "shots"], compact=False))
    assert summary.pairs_skipped == 2 * n_all and summary.pairs_done == 0, summary
    tracemalloc.start()
    run_extract(str(manifest), str(store), ["colour", "shots"], compact=False)
    client_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["export hdf5"] = _timed(lambda: export_hdf5(open_store(store), work / "scale.h5"))
    out["predict (fusion head, every clip)"] = _predict(store, work, ids)
    return {"clips": n_all, "seconds": out, "client_bytes_per_clip": client_bytes / n_all,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _predict(store: Path, work: Path, ids: list[str]) -> float:
    """Train a fusion head on 300 labelled clips (`mvfx train fusion`), then time `mvfx predict` over every clip,
    both as the commands a user runs; no time-line PNGs (a drawing costs ~10x a prediction)."""
    labels = work / "labels.csv"
    classes = ("exciting", "fear", "neutral", "relaxation", "sad", "tension")
    labels.write_text("clip_id,label\n" + "".join(f"{c},{classes[k % 6]}\n" for k, c in enumerate(ids[:300])))
    mvfx = [sys.executable, "-m", "mvfx.cli"]
    subprocess.run([*mvfx, "train", "fusion", str(store), "--labels", str(labels), "-f", "colour,shots", "--out",
                    str(work / "run"), "--folds", "2", "--epochs", "20"], check=True, capture_output=True)
    return _timed(lambda: subprocess.run([*mvfx, "predict", str(work / "run"), str(store), "--out", str(work / "pred"),
                                          "--timelines", "0"], check=True, capture_output=True))


def fit(results: dict[int, dict]) -> dict[str, dict]:
    """Per operation: the exponent between the two sizes and the time extrapolated to 1M clips."""
    small, large = sorted(results)[0], sorted(results)[-1]
    a, b = results[small], results[large]
    ratio = math.log(b["clips"] / a["clips"])
    fitted = {}
    for op, t_large in b["seconds"].items():
        t_small = a["seconds"][op]
        exponent = math.log(max(t_large, 1e-6) / max(t_small, 1e-6)) / ratio
        fitted[op] = {"exponent": exponent, "at_1m_s": t_large * (1_000_000 / b["clips"]) ** max(exponent, 0.0)}
    return fitted


def bench_scale(results: dict, work: Path, sizes: tuple[int, ...] = SIZES) -> None:
    """Each size in a child process (``python -m benchmarks.scale N DIR``), then the fit."""
    by_size = {}
    for n in sizes:
        print(f"   {n} clips ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.scale", str(n), str(work / f"scale-{n}")],
                              capture_output=True, text=True, check=True)
        by_size[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(work / f"scale-{n}", ignore_errors=True)
    results["scale"] = {"sizes": {str(n): r for n, r in by_size.items()},
                        "fit": fit(by_size) if len(by_size) > 1 else {}}


def markdown(scale: dict) -> list[str]:
    sizes = list(scale["sizes"])
    lines = ["", f"| store operation ({', '.join(f'{int(n):,}' for n in sizes)} clips; 3 sets x 20 rows) | "
             + " | ".join(f"{int(n):,} clips" for n in sizes) + (" | exponent | 1M clips (extrapolated) | goal |" if scale["fit"] else " | goal |"),
             "|---" * (len(sizes) + (4 if scale["fit"] else 2)) + "|"]
    for op in scale["sizes"][sizes[0]]["seconds"]:
        cells = [_seconds(scale["sizes"][n]["seconds"][op]) for n in sizes]
        if scale["fit"]:
            cells += [f"{scale['fit'][op]['exponent']:.2f}", _seconds(scale["fit"][op]["at_1m_s"])]
        goal = f"< {_seconds(GOALS[op])}" if op in GOALS else ""
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {goal} |")
    lines.append("| client memory during resume planning (tracemalloc peak) | "
                 + " | ".join(f"{scale['sizes'][n]['client_bytes_per_clip']:.0f} B/clip" for n in sizes)
                 + (" | | |" if scale["fit"] else "") + " < 2 KB/clip |")
    lines.append("| peak RSS of the process | " + " | ".join(f"{scale['sizes'][n]['peak_rss_mb']:.0f} MB" for n in sizes)
                 + (" | | |" if scale["fit"] else "") + " |")
    return lines


def _seconds(s: float) -> str:
    return f"{1000 * s:.1f} ms" if s < 1 else f"{s:.2f} s" if s < 60 else f"{s / 60:.1f} min"


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), Path(sys.argv[2]))))
