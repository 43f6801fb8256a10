"""How fast this machine is right now: two yardsticks recorded beside every benchmark run.

This build machine's speed drifts by 1.5-2x between hours (the same code's MTCNN read 10x real time per core on
2026-12-07 and 20x on 2026-12-08), more than most changes move a figure. Two short measurements, taken when a
benchmark run starts and again when it ends, let a reader compare figures from different hours:
- **matmul**: one thread's float32 rate on a 2048-square ``torch.matmul`` (GFLOP/s), which the networks follow;
- **copy**: one thread's memory bandwidth copying 64 MiB with NumPy (GB/s, read plus write), which the pyramid,
  crops, decoding and storing follow.
Each is the median of several repetitions; together they take 1.5-3 s.
"""
from __future__ import annotations

import statistics
import time

MATMUL_SIDE = 2048
COPY_BYTES = 64 << 20


def _median_seconds(step, repetitions: int) -> float:
    step()  # warm: first-touch pages, oneDNN's kernel choice
    seconds = []
    for _ in range(repetitions):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def machine_speed(repetitions: int = 7) -> dict[str, float]:
    """{"matmul_gflops": ..., "copy_gb_s": ...}, one thread each (torch's thread count is put back)."""
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(MATMUL_SIDE, MATMUL_SIDE), torch.randn(MATMUL_SIDE, MATMUL_SIDE)
        matmul = 2 * MATMUL_SIDE**3 / _median_seconds(lambda: torch.matmul(a, b), repetitions)
    finally:
        torch.set_num_threads(threads)
    source = np.ones(COPY_BYTES // 8)
    target = np.empty_like(source)
    copy = 2 * source.nbytes / _median_seconds(lambda: np.copyto(target, source), repetitions)
    return {"matmul_gflops": matmul / 1e9, "copy_gb_s": copy / 1e9}


def describe(speed: dict[str, dict[str, float]]) -> str:
    """'machine speed at start / end: 91 / 88 GFLOP/s matmul, 22.1 / 21.9 GB/s copy (one thread, ...)'; a run
    stopped before its end has only the start's."""
    readings = [speed[when] for when in ("start", "end") if when in speed]
    matmul = " / ".join(f"{r['matmul_gflops']:.0f}" for r in readings)
    copy = " / ".join(f"{r['copy_gb_s']:.1f}" for r in readings)
    return (f"machine speed at {' / '.join(w for w in ('start', 'end') if w in speed)}: {matmul} GFLOP/s matmul, "
            f"{copy} GB/s copy (one thread, benchmarks/machine_speed.py)")
