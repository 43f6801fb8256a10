"""Each worker process's share of the cores, given to torch, BLAS, OpenCV and FFmpeg, and said in the summary.

Left at their defaults, four worker processes on a 16-core node each start
16 torch threads, 16 BLAS threads, 16 OpenCV threads and FFmpeg decoders of
16 threads: 4x more runnable threads than cores, and the decoders that feed
the GPU starve. A ``ThreadBudget`` gives each worker process its share of its
machine's cores (the executor knows how many processes share one), and
splits that share among the clips it has in flight for their decoders. ``apply`` sets the libraries once per process.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadBudget:
    """``per_worker`` cores for one worker process (its share of its machine), ``clips_in_flight`` clips decoding in it."""

    per_worker: int
    clips_in_flight: int = 1

    @property
    def per_decoder(self) -> int:
        """FFmpeg threads of one clip's decoder: the worker's share split among its clips in flight."""
        return max(1, self.per_worker // max(1, self.clips_in_flight))

    def describe(self) -> str:
        return (f"{self.per_worker} per worker process for torch, BLAS and OpenCV; {self.clips_in_flight} clip(s) in flight "
                f"per worker, FFmpeg {self.per_decoder} per clip")


_applied: dict[str, int] = {}


def apply(budget: ThreadBudget) -> None:
    """Set this process's torch, BLAS and OpenCV thread counts to ``budget.per_worker`` (once; torch only if loaded)."""
    threads = budget.per_worker
    if _applied.get("threads") == threads and ("torch" not in sys.modules or _applied.get("torch") == threads):
        return
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(threads)
    threadpool_limits(limits=threads)  # every BLAS and OpenMP pool loaded so far, for the rest of the process
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        _applied["torch"] = threads
    _applied["threads"] = threads
