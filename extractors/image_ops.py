"""Image preprocessing shared by the frame networks: uint8 frames to the device, crop + normalise there; grey face crops.

Frames travel as uint8 (a quarter of float32's bytes; pinned and copied without
blocking when the device is CUDA) and are cropped, scaled and laid out by torch on
the extractor's device, the CPU included: the same float32 operations as the numpy
path they replaced, so the same values. On an H200 a batch of 16 frames took 3.4 ms
from uint8 array to network input against 30 ms for numpy then a float32 copy.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def upload(frames: np.ndarray, device: str) -> torch.Tensor:
    """uint8 frames as a tensor on ``device``: shared with the array on the CPU, pinned and non-blocking on CUDA."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    if torch.device(device).type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 [..., 3] channels-last -> float32 (x / 255 - mean) / std (``std`` None: no division), in place after one allocation.

    The numpy path's float32 operations in its order, so the same values bit for bit on the CPU. The fused form
    (x - 255 mean) * (1 / (255 std)) saves a pass but measured no faster on 2 cores (memory-bound passes over the
    crop, 5-10 ms per 32 frames either way) and moves values by up to 4.8e-7, which can move FlowNetS's direction bins.
    """
    import torch

    as_float = functools.partial(torch.as_tensor, dtype=torch.float32, device=pixels.device)
    scaled = pixels.float().div_(255.0).sub_(as_float(mean))
    return scaled if std is None else scaled.div_(as_float(std))


def centre_crop_normalise(frames: torch.Tensor | np.ndarray, crop: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[..., H, W, 3] uint8 (a tensor on the device; an array is taken as a CPU tensor) -> [..., 3, crop, crop] float32.

    Centre crop with torchvision's rounding of the offsets, then normalised; only the crop is converted to float.
    The result's memory is channels-last: [N, 3, c, c] is ``channels_last``, and [B, T, 3, c, c] transposed to the
    3D models' [B, 3, T, c, c] is ``channels_last_3d``, so ``.contiguous(memory_format=...)`` costs nothing there.
    """
    import torch

    frames = torch.as_tensor(frames)
    h, w = frames.shape[-3:-1]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    patch = normalise(frames[..., top : top + crop, left : left + crop, :], mean, std)
    return patch.movedim(-1, -3)


def grey_crop(rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The (x, y, w, h) box made square around its centre, clipped to the frame, grey, resized to size x size."""
    import cv2

    x, y, w, h = box
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    patch = rgb[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
