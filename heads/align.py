"""Put features of different time grids on one grid.

Each grid step [s, e) gets the average of the feature rows whose windows
overlap it, weighted by the length of the overlap (a row that covers the
whole step counts fully; one that grazes it counts little). A clip-level
row (one window over the whole clip) overlaps every step, so it is
broadcast. NaN values (e.g. "no face in this frame") are left out of the
average column by column; a step that no finite value overlaps is NaN.
"""
from __future__ import annotations

import numpy as np


def overlap_weights(grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[G, T] overlap in seconds of grid step g with row t."""
    start = np.maximum(grid[:, None, 0], times[None, :, 0])
    end = np.minimum(grid[:, None, 1], times[None, :, 1])
    return np.clip(end - start, 0.0, None)


def align(values: np.ndarray, times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """[G, D] overlap-weighted mean of ``values`` [T, D] (rows spanning ``times`` [T, 2]) on ``grid`` [G, 2]."""
    weights = overlap_weights(grid, times)
    present = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (weights @ np.where(present, values, 0.0).astype(np.float64)) / (weights @ present.astype(np.float64))
    return out.astype(np.float32)
