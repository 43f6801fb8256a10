"""Device choice shared by the neural extractors."""
from __future__ import annotations

from pipeline.errors import MvfxError


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda[:N]' must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MvfxError(f"--device {device}: no CUDA device is visible to torch {torch.__version__}")
    return device
