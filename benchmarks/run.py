"""`make bench`: decode limit, mvfx end to end, the naive way, per-extractor speed, scaling, store I/O, memory, heads,
the GPU (where there is one) and the speed of light per stage on the simulated GPU.

Every figure is the median of 3 runs (min and max kept), with the machine's speed measured at the start and the end
(``benchmarks/machine_speed.py``). Results go to benchmarks/results/<machine>-<date>-<HHMM>[-<steps>].json and .md
(the tables docs/benchmarks.md quotes).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.corpus import astronaut_clip, make_corpus
from benchmarks.gpu import bench_gpu as run_gpu
from benchmarks.gpu import markdown as gpu_table
from benchmarks.heads import bench_heads as run_heads
from benchmarks.heads import markdown as heads_table
from benchmarks.machine_speed import describe as describe_speed
from benchmarks.machine_speed import machine_speed
from benchmarks.memory import bench_memory as run_memory
from benchmarks.memory import markdown as memory_table
from benchmarks.mtcnn import bench_mtcnn as run_mtcnn
from benchmarks.mtcnn import markdown as mtcnn_table
from benchmarks.musicnn import bench_musicnn as run_musicnn
from benchmarks.musicnn import markdown as musicnn_table
from benchmarks.naive import run_naive
from benchmarks.scale import SIZES as SCALE_SIZES
from benchmarks.scale import bench_scale as run_scale
from benchmarks.scale import markdown as scale_table
from benchmarks.sol import bench_sol as run_sol
from benchmarks.sol import markdown as sol_table
from benchmarks.store import bench_store as run_store
from benchmarks.store import markdown as store_table
from mvfx.media.decode import AudioSpec, VideoSpec, decode
from mvfx.media.probe import probe
from mvfx.pipeline.executor import local_cores
from mvfx.pipeline.run import run_extract

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RUNS = 3
CHEAP = ["colour", "emobase", "logmel_phase"]
NAIVE_SET = CHEAP + ["vggish"]
SIZES = {"640x360": (24, (640, 360)), "1280x720": (16, (1280, 720))}
NAIVE_CLIPS = 4
SCALING_CLIPS = 12
PER_EXTRACTOR = ["colour", "emobase", "emobase_lld", "logmel_phase", "vggish", "resnet50", "places365", "slowfast_r50",
                 "i3d", "shots", "flownets", "yolov5", "faces", "face_expression"]


def timed(fn, runs: int | None = None) -> dict:
    """Median, min and max wall seconds of ``fn()`` over ``runs`` runs (default: ``--runs``)."""
    seconds = []
    for _ in range(runs or ARGS.runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "runs": seconds}


def _decode_needed(path: str) -> int:
    info = probe(path)
    d = decode(info, {AudioSpec(16000), AudioSpec(22050)}, {VideoSpec(fps=2.0, short_side=144)})
    return sum(len(f.images) for f in d.video.values())


def decode_limit(clips: list[str]) -> None:
    with ProcessPoolExecutor(local_cores()) as pool:
        list(pool.map(_decode_needed, clips))


def mvfx_run(corpus: Path, names: list[str], store: Path, **kwargs) -> None:
    shutil.rmtree(store, ignore_errors=True)
    summary = run_extract(str(corpus), str(store), names, random_weights=True, **kwargs)
    assert summary.ok, summary.failures


def media_seconds(clips: list[str]) -> float:
    return sum(probe(c).duration_s for c in clips)


def bench_pipeline(results: dict) -> None:
    for label, (n, size) in SIZES.items():
        corpus = make_corpus(WORK / label, n, size)
        clips = sorted(str(p) for p in corpus.glob("*.mp4"))
        seconds = media_seconds(clips)
        frames_total = sum(probe(c).fps * probe(c).duration_s for c in clips)
        limit = timed(lambda: decode_limit(clips))
        e2e = timed(lambda: mvfx_run(corpus, CHEAP, WORK / "store.zarr"))
        subset = _subset(label, clips[:NAIVE_CLIPS], "naive")
        naive = timed(lambda: run_naive(clips[:NAIVE_CLIPS], NAIVE_SET, WORK / "naive-out"))
        e2e4 = timed(lambda: mvfx_run(subset, NAIVE_SET, WORK / "store4.zarr", workers=1))
        results["pipeline"][label] = {
            "clips": len(clips), "media_seconds": seconds, "video_frames": frames_total,
            "decode_limit": {**limit, "clips_per_s": len(clips) / limit["median"], "frames_per_s": frames_total / limit["median"]},
            "mvfx_cheap": {**e2e, "clips_per_s": len(clips) / e2e["median"], "x_realtime": seconds / e2e["median"],
                           "overhead_vs_limit": e2e["median"] / limit["median"] - 1},
            "naive_4_extractors": {**naive, "clips": NAIVE_CLIPS, "s_per_clip": naive["median"] / NAIVE_CLIPS},
            "mvfx_4_extractors_in_process": {**e2e4, "clips": NAIVE_CLIPS, "s_per_clip": e2e4["median"] / NAIVE_CLIPS},
            "speedup_over_naive": naive["median"] / e2e4["median"],
        }
        print(json.dumps({label: results["pipeline"][label]["speedup_over_naive"]}), flush=True)


def bench_extractors(results: dict) -> None:
    corpus = make_corpus(WORK / "short", 1, (640, 360), seconds=10.0, seed=5)
    seconds = media_seconds(sorted(str(p) for p in corpus.glob("*.mp4")))
    options = {"flownets": {"width": "256", "height": "192"}}
    for name in PER_EXTRACTOR:
        mvfx_run(corpus, [name], WORK / "one.zarr", workers=1, options=options)  # warm-up: model set-up excluded
        t = timed(lambda: mvfx_run(corpus, [name], WORK / "one.zarr", workers=1, options=options))
        results["extractors"][name] = {**t, "clips_per_s": 1 / t["median"], "x_realtime": seconds / t["median"],
                                       "device": "cpu", "options": options.get(name, {})}
        print(name, f"{seconds / t['median']:.1f}x real time", flush=True)


FACE_VARIANTS = {
    "faces (MTCNN)": ("faces", {}), "faces (Haar)": ("faces", {"detector": "haar"}),
    "face_expression (MTCNN + mini-Xception)": ("face_expression", {}),
    "face_expression (Haar + mini-Xception)": ("face_expression", {"detector": "haar"}),
}


def bench_faces(results: dict) -> None:
    """Frames/s of the face extractors with their real weights (shipped in packages) on a clip with a face."""
    folder = WORK / "face"
    clip = astronaut_clip(folder / "astronaut.mp4", 10.0)
    for other in folder.iterdir():  # the corpus is this one clip: frames/s divides by its 20 frames
        if other != clip:
            other.unlink()
    frames = 20  # 10 s at 2 fps
    results["faces"] = {}
    for label, (name, option) in FACE_VARIANTS.items():
        def run(name=name, option=option) -> None:
            shutil.rmtree(WORK / "face.zarr", ignore_errors=True)
            summary = run_extract(str(folder), str(WORK / "face.zarr"), [name], {name: option, "faces": option}, workers=1)
            assert summary.ok, summary.failures

        run()  # warm-up: model set-up and the cache copy of the weights excluded
        t = timed(run)
        results["faces"][label] = {**t, "frames_per_s": frames / t["median"], "device": "cpu"}
        print(label, f"{frames / t['median']:.1f} frames/s", flush=True)


def _cli_cluster(workers: int):
    from dask.distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    port = 8786 + os.getpid() % 1000
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet) for _ in range(workers)]
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def _subset(label: str, clips: list[str], name: str) -> Path:
    """A folder of symlinks to some clips of a corpus."""
    folder = WORK / f"{label}-{name}"
    folder.mkdir(exist_ok=True)
    for c in clips:
        if not (folder / Path(c).name).exists():
            os.symlink(c, folder / Path(c).name)
    return folder


def bench_scaling(results: dict) -> None:
    from dask.distributed import LocalCluster

    corpus = _subset("640x360", sorted(str(p) for p in (WORK / "640x360").glob("*.mp4"))[:SCALING_CLIPS], "scaling")
    runs = {}
    runs["in-process (pipelined)"] = timed(lambda: mvfx_run(corpus, CHEAP, WORK / "s.zarr", workers=1))
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            runs[f"local dask, {n} worker(s)"] = timed(lambda: mvfx_run(corpus, CHEAP, WORK / "s.zarr", scheduler=cluster.scheduler_address))
    address, procs = _cli_cluster(2)
    try:
        runs["dask cluster, 2 x 1 worker"] = timed(lambda: mvfx_run(corpus, CHEAP, WORK / "s.zarr", scheduler=address))
    finally:
        for p in procs:
            p.terminate()
    base = runs["local dask, 1 worker(s)"]["median"]
    results["scaling"] = {k: {**v, "speedup_vs_1_worker": base / v["median"]} for k, v in runs.items()}


def bench_store(results: dict) -> None:
    """Store I/O per backend (benchmarks/store.py) on the cheap extractors' features of the 640x360 corpus."""
    source = WORK / "store.zarr"
    mvfx_run(make_corpus(WORK / "640x360", *SIZES["640x360"]), CHEAP, source)
    run_store(results, WORK, source, CHEAP, timed)


def bench_heads(results: dict) -> None:
    """Head training throughput (benchmarks/heads.py)."""
    run_heads(results, WORK)


def bench_mtcnn(results: dict) -> None:
    """MTCNN alone on the CPU, x real time per core at 2 fps, per network (benchmarks/mtcnn.py)."""
    run_mtcnn(results, WORK, ARGS.runs)


def bench_musicnn(results: dict) -> None:
    """musicnn's whole command on a 10-minute track and on an hour of them, x real time per core (benchmarks/musicnn.py)."""
    run_musicnn(results, WORK, ARGS.runs, local_cores())


def bench_memory(results: dict) -> None:
    """Peak memory against clip duration (benchmarks/memory.py)."""
    run_memory(results, WORK)


def bench_gpu(results: dict) -> None:
    """Per extractor, end to end at -j 1 and -j 4, GPU utilisation and the decode limit on a GPU (benchmarks/gpu.py)."""
    run_gpu(results, WORK, timed, media_seconds, save=lambda r: results_path(r).with_suffix(".json").write_text(
        json.dumps(r, indent=2, default=float)))


def bench_sol(results: dict) -> None:
    """Host limit, device limit, achieved and efficiency on the simulated GPU (benchmarks/sol.py)."""
    run_sol(results, WORK, ARGS.runs, save=lambda r: results_path(r).with_suffix(".json").write_text(
        json.dumps(r, indent=2, default=float)))


def bench_scale(results: dict) -> None:
    """Store and planning operations on synthetic stores of 10k and 100k clips (benchmarks/scale.py)."""
    run_scale(results, WORK, tuple(ARGS.clips or SCALE_SIZES))


def results_path(results: dict) -> Path:
    chosen = ARGS.steps
    return HERE / "results" / f"{results['machine']}-{results['date']}-{results['started']}{'-' + '-'.join(chosen) if chosen else ''}"


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']} ({results['cores']} cores, {results['python']}, torch {results['torch']}), "
             f"{results['date']} {results['started']} UTC; medians of {ARGS.runs} runs (min-max) unless a table says otherwise; "
             f"{describe_speed(results['machine_speed'])}."]
    if results["pipeline"]:
        lines += ["", "| corpus | decode limit | mvfx colour+emobase+logmel_phase | overhead vs limit | naive, 4 extractors |"
                  " mvfx, same 4 | speed-up |", "|---|---|---|---|---|---|---|"]
    for label, p in results["pipeline"].items():
        lim, e2e = p["decode_limit"], p["mvfx_cheap"]
        lines.append(
            f"| {p['clips']} x 30 s {label} | {lim['clips_per_s']:.2f} clips/s, {lim['frames_per_s']:.0f} frames/s "
            f"({lim['min']:.1f}-{lim['max']:.1f} s) | {e2e['clips_per_s']:.2f} clips/s, {e2e['x_realtime']:.0f}x real time "
            f"({e2e['min']:.1f}-{e2e['max']:.1f} s) | {100 * e2e['overhead_vs_limit']:+.0f}% | "
            f"{p['naive_4_extractors']['s_per_clip']:.2f} s/clip | {p['mvfx_4_extractors_in_process']['s_per_clip']:.2f} s/clip | "
            f"{p['speedup_over_naive']:.1f}x |")
    if results["extractors"]:
        lines += ["", "| extractor (CPU, random weights, one 10 s 640x360 clip, decode included) | x real time | clips/s |"
                  " min-max s |", "|---|---|---|---|"]
    for name, e in results["extractors"].items():
        lines.append(f"| {name} | {e['x_realtime']:.1f} | {e['clips_per_s']:.2f} | {e['min']:.1f}-{e['max']:.1f} |")
    if results.get("faces"):
        lines += ["", "| face extractor (CPU, real weights, 10 s 640x360 clip with a face, 20 frames at 2 fps) | frames/s |"
                  " min-max s |", "|---|---|---|"]
        for label, f in results["faces"].items():
            lines.append(f"| {label} | {f['frames_per_s']:.1f} | {f['min']:.1f}-{f['max']:.1f} |")
    if results.get("mtcnn"):
        lines += mtcnn_table(results["mtcnn"])
    if results.get("musicnn"):
        lines += musicnn_table(results["musicnn"])
    if results.get("scaling"):
        lines += ["", f"| workers ({SCALING_CLIPS} x 30 s 640x360, cheap extractors) | seconds | speed-up vs 1 Dask worker |",
                  "|---|---|---|"]
        for name, s in results["scaling"].items():
            lines.append(f"| {name} | {s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}) | {s['speedup_vs_1_worker']:.2f}x |")
    if results.get("memory"):
        lines += memory_table(results["memory"])
    if results.get("heads"):
        lines += heads_table(results["heads"])
    if results.get("store"):
        lines += store_table(results["store"])
    if results.get("gpu"):
        lines += gpu_table(results["gpu"])
    if results.get("scale"):
        lines += scale_table(results["scale"])
    if results.get("sol"):
        lines += sol_table(results["sol"])
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    steps = [bench_pipeline, bench_scaling, bench_store, bench_extractors, bench_faces, bench_mtcnn, bench_musicnn, bench_memory,
             bench_heads, bench_gpu, bench_sol, bench_scale]
    names = [step.__name__.removeprefix("bench_") for step in steps]
    chosen = ARGS.steps  # e.g. `python -m benchmarks.run faces` runs bench_faces only
    unknown = [name for name in chosen if name not in names]
    if unknown:
        sys.exit(f"python -m benchmarks.run: no step {', '.join(unknown)}; the steps are {', '.join(names)}")
    WORK.mkdir(exist_ok=True)
    os.environ.setdefault("MVFX_HOME", str(WORK / "home"))
    results = {"machine": f"{platform.machine()}-{local_cores()}c", "cores": local_cores(), "python": platform.python_version(),
               "torch": torch.__version__, "cuda": torch.cuda.is_available(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
               "started": time.strftime("%H%M", time.gmtime()), "pipeline": {}, "extractors": {}, "faces": {},
               "machine_speed": {"start": machine_speed()}}
    started = time.perf_counter()
    for step in [step for step, name in zip(steps, names) if not chosen or name in chosen]:
        print(f"== {step.__name__} ({time.perf_counter() - started:.0f} s so far)", flush=True)
        step(results)
    results["total_seconds"] = time.perf_counter() - started
    results["machine_speed"]["end"] = machine_speed()
    out = results_path(results)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float))
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out}.json and .md in {results['total_seconds']:.0f} s")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("steps", nargs="*", help="steps to run (default: all), e.g. faces, gpu, scale")
    parser.add_argument("--clips", type=int, action="append", help="scale: a store size to measure (repeatable; "
                        f"default {' and '.join(map(str, SCALE_SIZES))})")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"runs per measurement, medians taken (default {RUNS})")
    return parser.parse_args(argv)


ARGS = parse_args([])

if __name__ == "__main__":
    ARGS = parse_args(sys.argv[1:])
    main()
