"""Peak resident memory against clip duration: 30 s, 2 min and 10 min at 1280x720.

Each duration is one `mvfx extract` child process (one in-process worker,
random weights) with every heavy extractor together; its peak RSS comes from
the kernel (``wait4``'s ru_maxrss), its speed from the wall clock. One run per
duration: the 10-minute run alone takes a quarter of an hour on 2 cores.
The 30 s clip is generated here (benchmarks/corpus.py); the longer ones
repeat it without re-encoding (``repeat_clip``), all cached under work/.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.corpus import make_corpus, repeat_clip

MEMORY_SET = ["colour", "emobase", "logmel_phase", "shots", "resnet50", "slowfast_r50", "i3d", "yolov5", "faces"]
DURATIONS = {"30 s": 30.0, "2 min": 120.0, "10 min": 600.0}
TARGET_RATIO, TARGET_GIB = 1.3, 2.5


# Started from a small launcher: a child forked from this process (torch loaded, hundreds of MiB) would be charged
# this process's resident memory as its own peak (Linux counts the forked copy's high-water mark at exec).
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss]))
"""


def peak_of(command: list[str]) -> dict:
    """Run ``command``; its wall seconds, CPU seconds (user + system, its children included) and peak resident memory
    in GiB, as the kernel counts them for the finished process."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"{' '.join(command)}: the launcher failed: {done.stderr[-2000:]}")
    code, wall, cpu, peak_kib = json.loads(done.stdout.splitlines()[-1])
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak_kib * 1024 / 2**30}


def bench_memory(results: dict, work: Path) -> None:
    mvfx = str(Path(sys.executable).parent / "mvfx")
    rows = {}
    base = next(make_corpus(work / "memory-30s", 1, (1280, 720), seconds=30.0, seed=7).glob("*.mp4"))
    for label, seconds in DURATIONS.items():
        corpus = work / f"memory-{int(seconds)}s"
        if seconds > 30.0:
            corpus.mkdir(exist_ok=True)
            repeat_clip(base, int(seconds // 30), corpus / f"repeat_{int(seconds)}s.mp4")
        store = work / "memory.zarr"
        shutil.rmtree(store, ignore_errors=True)
        run = peak_of([mvfx, "extract", str(corpus), "--store", str(store), "-e", ",".join(MEMORY_SET),
                       "--random-weights", "-j", "1"])
        rows[label] = {**run, "media_seconds": seconds, "x_realtime": seconds / run["wall_s"], "clips_per_s": 1 / run["wall_s"]}
        print(label, f"peak {run['peak_rss_gib']:.2f} GiB, {seconds / run['wall_s']:.2f}x real time", flush=True)
    first = rows["30 s"]["peak_rss_gib"]
    for row in rows.values():
        row["vs_30s"] = row["peak_rss_gib"] / first
    results["memory"] = {"extractors": MEMORY_SET, "size": "1280x720", "rows": rows,
                         "target": {"ratio_vs_30s": TARGET_RATIO, "peak_gib": TARGET_GIB}}


def markdown(memory: dict) -> list[str]:
    lines = ["", f"| clip, 1280x720 ({', '.join(memory['extractors'])}; random weights, one in-process worker) "
             "| peak RSS | vs 30 s | x real time | wall s |", "|---|---|---|---|---|"]
    for label, row in memory["rows"].items():
        lines.append(f"| {label} | {row['peak_rss_gib']:.2f} GiB | {row['vs_30s']:.2f}x | {row['x_realtime']:.2f} | {row['wall_s']:.0f} |")
    target = memory["target"]
    lines.append(f"\nTarget: the 10-minute peak within {target['ratio_vs_30s']}x of the 30 s peak and under {target['peak_gib']} GiB.")
    return lines
