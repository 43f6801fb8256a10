"""Device, batch size and precision shared by the neural extractors.

- device: 'auto' picks CUDA when torch sees a GPU, else the CPU; 'cuda:N' must exist. 'sim[:key=value,...]' is a
  simulated GPU (``simulated_device``): the CUDA path's batch plan, memory guard and shared passes, with forward
  passes that take modelled time, for tests and benchmarks on machines without one.
- batch size 0 (the default) means automatic: a per-extractor guess for the
  CPU; on a GPU what this worker's part of its free memory (measured once, at
  set-up) holds, up to a per-extractor cap where larger batches stop paying.
- a forward pass that runs out of GPU memory (another process took it after
  set-up) is run again in halves, and later passes stay at the size that
  fitted (``MemoryGuard``).
- precision 'auto' is bfloat16 autocast on CUDA (measured to keep features
  within cosine 0.99 of fp32, see tests) and fp32 on the CPU; 'fp32', 'bf16'
  and 'fp16' (CUDA only) force a choice.
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mvfx.extractors.simulated_device import SimulatedDevice, is_simulated
from mvfx.media.errors import MvfxError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str, simulated_ok: bool = True) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda[:N]' must exist; 'sim' gets its settings and a queue
    (refused where ``simulated_ok`` is False: training and prediction need real arithmetic)."""
    if is_simulated(device):
        if not simulated_ok:
            raise MvfxError(f"--device {device}: the simulated GPU computes nothing; it serves `mvfx extract` tests and "
                            "benchmarks only (docs/gpu.md)")
        try:
            return SimulatedDevice.parse(device).resolve().spec()
        except ValueError as exc:
            raise MvfxError(str(exc)) from None
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MvfxError(f"--device {device}: no CUDA device is visible to torch {torch.__version__}")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise MvfxError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device != "cpu":
        raise MvfxError(f"--device {device}: use auto, cpu, cuda, cuda:N or sim (a simulated GPU, docs/gpu.md)")
    return device


def on_accelerator(device: str) -> bool:
    """A GPU, real or simulated: batches sized from its memory, clips in flight sharing its passes, bf16."""
    return device.startswith("cuda") or is_simulated(device)


def tensor_device(device: str) -> str:
    """Where tensors live for a named device: a simulated GPU's stay in host memory."""
    return "cpu" if is_simulated(device) else device


@functools.cache
def device_free_memory(device: str) -> int | None:
    """Bytes free on a CUDA device (None on the CPU), read once per process: before this worker's first model,
    so that every extractor of the worker sizes its batches from the same figure."""
    if is_simulated(device):
        return SimulatedDevice.parse(device).free_bytes
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def auto_batch_size(requested: int, device: str, cpu_default: int, mb_per_item: float, gpu_cap: int,
                    device_free: int | None, gpu_workers: int = 1) -> int:
    """``requested`` if set; else ``cpu_default`` on the CPU, or on a GPU what this worker's part of a quarter
    of the free memory (``device_free`` shared by ``gpu_workers`` processes) holds, at most ``gpu_cap``.

    The cap is where a bigger batch stops making the GPU faster; beyond it a batch only costs host memory
    to assemble (64 frames a SlowFast window) and latency. The result is a power of two: streamed pieces
    are a multiple of every consumer's batch (``pipeline.streaming.piece_sizes``), and the least common
    multiple of powers of two is the largest of them. Measured on an H200: ResNet-50 and Places365 sized
    from readings taken before and after the other's model was loaded got 145 and 146 frames, and pieces
    of lcm(145, 146) = 21170 frames made every 60 s 720p clip "need" 44 GiB.
    """
    if requested > 0:
        return requested
    if not on_accelerator(device) or device_free is None:
        return cpu_default
    fits = device_free / 4 / max(1, gpu_workers) / (mb_per_item * 2**20)
    return 2 ** int(math.log2(max(1.0, min(gpu_cap, fits))))


def autocast(device: str, precision: str):
    """The autocast context for a precision choice (a no-op for fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise MvfxError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if is_simulated(device):  # no arithmetic runs; the simulated passes take the precision's rate
        return contextlib.nullcontext()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if precision == "auto":
        precision = "bf16" if kind == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and kind == "cpu":
        raise MvfxError("fp16 autocast needs CUDA; use bf16 on the CPU")
    return torch.autocast(kind, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class MemoryGuard:
    """Forward passes that outlive a GPU which another process fills after set-up.

    Automatic batch sizes come from the free memory read once, at set-up. When another job on the node
    takes memory later, a pass runs out of it (``out_of_device_memory``): the guard frees torch's cache and
    runs the same items in halves, and every later call of this worker is cut to the size that fitted.
    Each item's rows are its own, so the rows are the same within float tolerance (a batch size can change
    the GPU's choice of kernels). Each smaller size is one notice for the run summary (``drain``, with the
    seconds its forward passes took). One item
    that does not fit fails as before. On the CPU nothing raises that error, and the guard only calls through.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.limit: int | None = None  # rows per call that fitted, once a call ran out of memory (for the worker's life)
        self._notices: list[str] = []
        self._seconds = 0.0  # in forward passes, failed ones included (pipeline.timing shows them)
        self._lock = threading.Lock()

    def __call__(self, forward: Callable[[Any], Any], items: Any, overlap: int = 0) -> Any:
        """``forward(items)``, split when the device runs out of memory; ``overlap``: items two consecutive
        rows share (1 for frame pairs: N frames give N - 1 rows). Results are numpy rows or lists, joined."""
        import torch

        rows = len(items) - overlap
        limit = self.limit
        if limit is not None and rows > limit:
            return _joined([self(forward, items[s : s + limit + overlap], overlap) for s in range(0, rows, limit)])
        start = time.perf_counter()
        try:
            return forward(items)
        except RuntimeError as exc:
            if rows <= 1 or not out_of_device_memory(exc):
                raise
            # retried below, once the exception (and the failed pass's tensors its traceback holds) is released
        finally:
            self._count(time.perf_counter() - start)
        torch.cuda.empty_cache()
        self._shrink(rows, (rows + 1) // 2)
        return self(forward, items, overlap)

    def _shrink(self, tried: int, limit: int) -> None:
        with self._lock:  # the model thread of shared passes and the clip threads draining notices
            if self.limit is not None and limit >= self.limit:
                return
            self.limit = limit
            self._notices.append(f"{self.name}: the GPU ran out of memory at {tried} items per forward pass (another "
                                 f"process using it?); now at most {limit}")

    def _count(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    def drain(self) -> tuple[list[str], float]:
        """The notices, and the seconds spent in forward passes, since the last call."""
        with self._lock:
            notices, seconds, self._notices, self._seconds = self._notices, self._seconds, [], 0.0
        return notices, seconds


def out_of_device_memory(exc: BaseException) -> bool:
    """The GPU ran out of memory: torch's allocator, or cuDNN's / cuBLAS's own allocations (a RuntimeError)."""
    import torch

    message = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in message or "ALLOC_FAILED" in message


def _joined(parts: list) -> Any:
    return [row for part in parts for row in part] if isinstance(parts[0], list) else np.concatenate(parts)
