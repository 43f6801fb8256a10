"""Put features of different time grids on one grid.

Each grid step [s, e) gets the average of the feature rows whose windows
overlap it, weighted by the length of the overlap (a row that covers the
whole step counts fully; one that grazes it counts little). A clip-level
row (one window over the whole clip) overlaps every step, so it is
broadcast. NaN values (e.g. "no face in this frame") are left out of the
average column by column; a step that no finite value overlaps is NaN.
"""
from __future__ import annotations

import warnings

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


def clip_mean(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[D] one clip's rows averaged into one: each row weighted by how long it lasts (``align`` over the rows' span).

    Training (``dataset.clip_level_features``) and prediction use this one function: rows [0, 1] -> 0 and [1, 5] -> 1
    average to 0.8 in both (per-shot I3D, shots and imported CSVs have rows of unequal length). Rows that all last no
    time (single time stamps) count equally.
    """
    start, end = float(times[:, 0].min()), float(times[:, 1].max())
    if end > start and np.any(times[:, 1] > times[:, 0]):
        return align(values, times, np.array([[start, end]]))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN, as in align
        return np.nanmean(values.astype(np.float64), axis=0).astype(np.float32)
