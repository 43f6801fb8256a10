"""Each worker process's share of the cores, given to torch, BLAS, OpenCV and FFmpeg, and said in the summary.

Left at their defaults, four worker processes on a 16-core node each start
16 torch threads, 16 BLAS threads, 16 OpenCV threads and FFmpeg decoders of
16 threads: 4x more runnable threads than cores, and the decoders that feed
the GPU starve. A ``ThreadBudget`` gives each worker process its share of its
machine's cores (the executor knows how many processes share one), and
splits that share among the clips it has in flight for their decoders.

Thread counts and the allocator are settings of a whole process, so mvfx makes them for good only in the processes
it starts itself: the workers of its local Dask cluster (``own_process``, through a worker plugin), where it also lets
glibc reuse large freed blocks (``reuse_large_blocks``) and leaves Dask's own ``MALLOC_TRIM_THRESHOLD_`` as Dask set
it. Everywhere else (an in-process run, ``mvfx predict``'s extraction, a notebook, a worker of a cluster someone
else started) it sets the thread counts only while its work runs there (``threads_limited``) and puts back what it
found when the last of that work returns. The allocator it leaves alone there, except in the process of the ``mvfx``
command itself, which is mvfx's own (``own_allocator``, called by ``mvfx.cli.run``). ``describe_settings`` says
which happened, for the run summary.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 256 * 2**20  # blocks smaller than this come from the heap and are reused (glibc's default: 128 KiB, rising to 32 MiB)


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


class _Limits:
    """The thread counts this process had before mvfx set its own, to put back; one per process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0  # blocks of mvfx work running now (clips in flight)
        self.owned = False  # a worker process mvfx started: its settings stay
        self.threads = 0
        self.allocator = ""  # what became of glibc's setting, in words
        self.restore: list = []  # undo steps, last first
        self.torch_done = False

    def set(self, threads: int) -> None:
        """Set torch (if loaded), BLAS and OpenCV to ``threads``, remembering how to undo it; libraries loaded since
        the last call (torch, by an extractor's set-up) are set too."""
        import cv2
        from threadpoolctl import threadpool_limits

        if self.threads != threads:
            before = cv2.getNumThreads()
            cv2.setNumThreads(threads)
            self.restore.append(lambda: cv2.setNumThreads(before))
            self.torch_done = False
        self.restore.append(threadpool_limits(limits=threads).restore_original_limits)  # every BLAS/OpenMP pool loaded
        torch = sys.modules.get("torch")
        if torch is not None and not self.torch_done:
            before_torch = torch.get_num_threads()
            torch.set_num_threads(threads)
            self.restore.append(lambda: torch.set_num_threads(before_torch))
            self.torch_done = True
        self.threads = threads

    def undo(self) -> None:
        for step in reversed(self.restore):
            step()
        self.restore, self.threads, self.torch_done = [], 0, False


_LIMITS = _Limits()


@contextlib.contextmanager
def threads_limited(budget: ThreadBudget) -> Iterator[None]:
    """torch, BLAS and OpenCV at ``budget.per_worker`` threads while the block runs, in a process mvfx did not start;
    what was there before comes back when the last such block (of any thread) ends. Nothing to do in its own workers."""
    limits = _LIMITS
    with limits.lock:
        if not limits.owned:
            if limits.users == 0:
                limits.set(budget.per_worker)
            limits.users += 1
    try:
        yield
    finally:
        with limits.lock:
            if not limits.owned:
                limits.users -= 1
                if limits.users == 0:
                    limits.undo()


def limit_new_libraries(budget: ThreadBudget) -> None:
    """After an extractor's set-up: the libraries it loaded (torch) get the budget too, under the same terms."""
    limits = _LIMITS
    with limits.lock:
        if limits.owned or limits.users:
            limits.set(budget.per_worker)


def own_process(budget: ThreadBudget) -> None:
    """Settings for good in a worker process mvfx started: the thread counts, and glibc's reuse of large blocks."""
    limits = _LIMITS
    with limits.lock:
        limits.undo()
        limits.set(budget.per_worker)
        limits.restore = []  # nothing to put back: the process is mvfx's
        limits.owned = True
        limits.allocator = reuse_large_blocks()


def own_allocator() -> None:
    """In the process of the ``mvfx`` command, mvfx's own from start to exit: glibc's reuse of large blocks, as in its
    workers (an in-process `mvfx extract -e musicnn` of a 10-minute track: system time 0.9-1.8 s -> 0.93-0.99 s)."""
    limits = _LIMITS
    with limits.lock:
        limits.allocator = reuse_large_blocks()


def describe_settings() -> str:
    """In words, for the run summary: which process-wide settings this process runs with, and for how long."""
    limits = _LIMITS
    if limits.owned:
        return (f"workers mvfx started: torch, BLAS and OpenCV at {limits.threads} thread(s) for the worker's life; "
                f"{limits.allocator}")
    allocator = limits.allocator or "glibc's allocator left as it was"
    return f"torch, BLAS and OpenCV threads set while mvfx's work runs, then put back as they were; {allocator}"


def reuse_large_blocks() -> str:
    """Let glibc's malloc reuse freed blocks of up to ``MMAP_THRESHOLD`` instead of mapping each one afresh; what
    became of it, in words (glibc may refuse the value; elsewhere, macOS or musl, nothing changes).

    glibc serves a block over 32 MiB with its own mmap and unmaps it when freed, so every such block comes back as
    fresh pages the kernel must fault in and zero: the activations of the video networks on the CPU (SlowFast's are
    over 32 MB) and stacked frame pieces, for every forward pass. Measured on 2 cores (30 s 720p clip, slowfast_r50
    + i3d + resnet50, whole process): minor page faults 0.64 -> 0.38 million, system time 2.0 -> 1.1 s, wall time
    5 % less; resident memory after the forward passes 850 -> 960 MiB (docs/gpu.md "Measured"). Only the mmap
    threshold is set: freed memory at the heap's top goes back to the system as Dask's worker environment asks
    (``MALLOC_TRIM_THRESHOLD_``). (Threads other than the main one allocate from glibc's per-thread heaps of at most
    64 MiB: there larger blocks are still mapped.)
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        glibc = None
    if not glibc or not sys.platform.startswith("linux"):
        return "allocator unchanged (not glibc)"
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return f"glibc refused M_MMAP_THRESHOLD={MMAP_THRESHOLD}: allocator unchanged"
    return f"glibc reuses freed blocks of up to {MMAP_THRESHOLD // 2**20} MiB"
