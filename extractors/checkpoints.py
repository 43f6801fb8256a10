"""Safe checkpoint loading: tensors only (``weights_only=True``), key renaming, strict key and shape checks."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mvfx.media.errors import MvfxError

WRAPPER_KEYS = ("state_dict", "model_state", "model", "net")


def load_checkpoint(path: Path, what: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MvfxError(f"{path}: refused to load as {what} weights (not a plain tensor checkpoint: {first})") from None


def unwrap_state_dict(checkpoint) -> dict:
    """The tensors of a checkpoint saved as a bare state dict or under 'state_dict', 'model_state', 'model' or 'net'."""
    for key in WRAPPER_KEYS:
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def load_state_dict_strict(module, state_dict: dict, what: str, rename: Callable[[str], str] | None = None) -> None:
    """Copy ``state_dict`` into ``module`` after checking every key and shape; one-line error on the first mismatch."""
    if rename is not None:
        state_dict = {rename(k): v for k, v in state_dict.items()}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        first = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise MvfxError(f"{what} checkpoint does not fit the model: {first} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            got = tuple(state_dict[key].shape)
            raise MvfxError(f"{what} checkpoint does not fit the model: {key} has shape {got}, expected {tuple(tensor.shape)}")
    module.load_state_dict(state_dict, strict=True)
