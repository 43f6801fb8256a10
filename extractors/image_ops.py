"""Image preprocessing shared by the frame networks: centre crop + normalisation, square grey face crops."""
from __future__ import annotations

import cv2
import numpy as np


def centre_crop_normalise(frames: np.ndarray, crop: int, mean, std) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 3, crop, crop] float32: centre crop (torchvision's rounding), /255, normalise."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    h, w = frames.shape[1:3]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    patch = frames[:, top : top + crop, left : left + crop].astype(np.float32) / 255.0
    return ((patch - mean) / std).transpose(0, 3, 1, 2).copy()


def grey_crop(rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The (x, y, w, h) box made square around its centre, clipped to the frame, grey, resized to size x size."""
    x, y, w, h = box
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    patch = rgb[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
