"""Each worker process's share of the cores, given to torch, BLAS, OpenCV and FFmpeg, and said in the summary.

Left at their defaults, four worker processes on a 16-core node each start
16 torch threads, 16 BLAS threads, 16 OpenCV threads and FFmpeg decoders of
16 threads: 4x more runnable threads than cores, and the decoders that feed
the GPU starve. A ``ThreadBudget`` gives each worker process its share of its
machine's cores (the executor knows how many processes share one), and
splits that share among the clips it has in flight for their decoders. ``apply`` sets the libraries once per process,
and glibc's allocator (``reuse_large_blocks``).
"""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 256 * 2**20  # blocks smaller than this come from the heap and are reused (glibc's default: 128 KiB, rising to 32 MiB)
TRIM_THRESHOLD = 256 * 2**20  # free memory at the heap's top beyond this goes back to the system (default: 128 KiB, rising to 64 MiB)


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
    reuse_large_blocks()


def reuse_large_blocks() -> bool:
    """Let glibc's malloc reuse freed blocks of up to ``MMAP_THRESHOLD`` instead of mapping each one afresh (once per
    process; True where set). Returns False elsewhere (not glibc: macOS, musl) and changes nothing there.

    glibc serves a block over 32 MiB with its own mmap and unmaps it when freed, so every such block comes back as
    fresh pages the kernel must fault in and zero: the activations of the video networks on the CPU (SlowFast's are
    over 32 MB) and stacked frame pieces, for every forward pass. Measured on 2 cores (30 s 720p clip, slowfast_r50
    + i3d + resnet50, whole process): minor page faults 0.64 -> 0.38 million, system time 2.0 -> 1.1 s, wall time
    5 % less; a worker keeps up to ``TRIM_THRESHOLD`` of freed memory for reuse (resident after the forward passes
    850 -> 960 MiB, peak 1220 -> 1311 MiB; docs/gpu.md "Measured"). Freed memory is still returned: whatever lies
    free above ``TRIM_THRESHOLD`` at the heap's top, and any block of ``MMAP_THRESHOLD`` or more. (Threads other than
    the main one allocate from glibc's per-thread heaps of at most 64 MiB: there larger blocks are still mapped.)
    """
    if "mallopt" in _applied:
        return bool(_applied["mallopt"])
    _applied["mallopt"] = 0
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        glibc = None
    if not glibc or not sys.platform.startswith("linux"):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied["mallopt"] = int(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return bool(_applied["mallopt"])
