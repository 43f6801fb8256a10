"""Device, batch size and precision shared by the neural extractors.

- device: 'auto' picks CUDA when torch sees a GPU, else the CPU; 'cuda:N' must exist.
- batch size 0 (the default) means automatic: a per-extractor guess for the
  CPU, scaled up on a GPU by its free memory.
- precision 'auto' is bfloat16 autocast on CUDA (measured to keep features
  within cosine 0.99 of fp32, see tests) and fp32 on the CPU; 'fp32', 'bf16'
  and 'fp16' (CUDA only) force a choice.
"""
from __future__ import annotations

import contextlib

from mvfx.media.errors import MvfxError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda[:N]' must exist."""
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
        raise MvfxError(f"--device {device}: use auto, cpu, cuda or cuda:N")
    return device


def auto_batch_size(requested: int, device: str, cpu_default: int, mb_per_item: float) -> int:
    """``requested`` if set, else ``cpu_default`` on the CPU or what a quarter of the GPU's free memory holds."""
    if requested > 0:
        return requested
    if not device.startswith("cuda"):
        return cpu_default
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(max(cpu_default, min(512, free / 4 / (mb_per_item * 2**20))))


def autocast(device: str, precision: str):
    """The autocast context for a precision choice (a no-op for fp32)."""
    import torch

    if precision not in PRECISIONS:
        raise MvfxError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if precision == "auto":
        precision = "bf16" if kind == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and kind == "cpu":
        raise MvfxError("fp16 autocast needs CUDA; use bf16 on the CPU")
    return torch.autocast(kind, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
