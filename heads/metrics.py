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


def hit_at_k(relevant: np.ndarray, k: int) -> float:
    """1 if any of the first k ranked results is relevant (``relevant`` in rank order)."""
    return float(np.any(relevant[:k]))


def average_precision(relevant: np.ndarray) -> float:
    """Mean of precision@i over the ranks i of relevant results; 0 when none is relevant."""
    relevant = np.asarray(relevant, bool)
    if not relevant.any():
        return 0.0
    hits = np.cumsum(relevant)
    return float(np.mean(hits[relevant] / (np.flatnonzero(relevant) + 1)))


def classification_scores(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro F1 (the mean of every class's F1, two classes included), one-vs-rest ROC AUC (binary:
    AUC of the second class, which equals the macro one-vs-rest AUC) and the confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        roc_auc_score,
    )

    pred = proba.argmax(axis=1)
    present = np.unique(y)
    if len(classes) == 2:
        auc = roc_auc_score(y, proba[:, 1]) if len(present) == 2 else float("nan")
    else:
        auc = roc_auc_score(y, proba, multi_class="ovr", labels=range(len(classes))) if len(present) == len(classes) else float("nan")
    f1 = f1_score(y, pred, average="macro", labels=range(len(classes)), zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1),
        "roc_auc": float(auc),
        "confusion": confusion_matrix(y, pred, labels=range(len(classes))).tolist(),
    }
