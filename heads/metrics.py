"""Regression metrics (numpy; short enough not to need a library)."""
from __future__ import annotations

import numpy as np


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    sy, sp = y.std(), p.std()
    if sy == 0 or sp == 0:
        return float("nan")
    return float(np.mean((y - y.mean()) * (p - p.mean())) / (sy * sp))


def ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    cov = np.mean((y - y.mean()) * (p - p.mean()))
    denominator = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    return float(2 * cov / denominator) if denominator > 0 else float("nan")


def regression_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"rmse": rmse(y, p), "pearson": pearson(y, p), "ccc": ccc(y, p)}


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and standard deviation ignoring NaN (a constant clip has no r or CCC)."""
    arr = np.asarray(values, float)
    return {"mean": float(np.nanmean(arr)), "std": float(np.nanstd(arr))} if np.isfinite(arr).any() else {"mean": float("nan"), "std": float("nan")}
