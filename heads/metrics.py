"""Scores of the heads: regression (numpy; short enough not to need a library), classification (scikit-learn),
retrieval (top-K hits, mAP), and their summaries over folds.

Every run writes them into metrics.json in one format (``METRICS_FORMAT`` version ``METRICS_VERSION``, written by
``runs.folder.RunFolder.finish``, read by ``report.read_metrics``); version 1, before it, had no format field."""
from __future__ import annotations

import numpy as np

METRICS_FORMAT = "mvfx-metrics"
METRICS_VERSION = 2
CLASS_METRICS = ("accuracy", "f1", "roc_auc")  # what a classifier's folds are summarised by (mean ± std)
TOP_K = (1, 3, 5)  # the ranks at which retrieval counts a hit


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
    """Mean and standard deviation over the folds where the metric is defined (a constant prediction has no r
    or CCC), with how many those were (``defined`` of ``folds``): a mean of 1 fold of 5 must say so."""
    arr = np.asarray(values, float)
    finite = arr[np.isfinite(arr)]
    spread = {"mean": float(finite.mean()), "std": float(finite.std())} if len(finite) else {"mean": float("nan"), "std": float("nan")}
    return spread | {"defined": int(len(finite)), "folds": int(len(arr))}


def spread(stat: dict | None) -> str:
    """'0.412 ± 0.051', with '(in 1 of 5 folds)' when some folds leave it undefined; '0.412' from one fold (a
    labels file's split, or a run without folds); 'undefined' or '-'."""
    if not stat or "mean" not in stat:
        return "-"
    if not np.isfinite(stat["mean"]):
        return "undefined"
    defined, folds = stat.get("defined"), stat.get("folds")
    if folds == 1:
        return f"{stat['mean']:.3f}"
    text = f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return text + (f" (in {defined} of {folds} folds)" if defined is not None and folds and defined < folds else "")


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


def in_columns(proba: np.ndarray, have: list[str], classes: list[str]) -> np.ndarray:
    """A fold model's probabilities over the classes it saw (``have``), in the columns of every class (a class its
    training rows lacked gets 0)."""
    out = np.zeros((len(proba), len(classes)))
    out[:, [classes.index(c) for c in have]] = proba
    return out


def class_summary(fold_scores: list[dict], y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """``aggregate``: each of ``CLASS_METRICS`` as mean ± std over the folds' ``classification_scores``; ``out_of_fold``:
    the scores of the out-of-fold probabilities ``proba`` of the rows ``y``, every fold's test rows together."""
    return {"aggregate": {m: mean_std([f[m] for f in fold_scores]) for m in CLASS_METRICS},
            "out_of_fold": classification_scores(y, proba, classes)}


def retrieval_scores(scores: np.ndarray, query_labels: list[str], gallery_labels: list[str]) -> dict:
    """Top-K hit rates and mAP when each query (row) ranks the gallery (columns) by ``scores``; a result is relevant
    when it carries the query's label."""
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = np.array(gallery_labels)[order] == np.array(query_labels)[:, None]
    out = {f"top{k}": float(np.mean([hit_at_k(r, k) for r in relevant])) for k in TOP_K}
    out["map"] = float(np.mean([average_precision(r) for r in relevant]))
    return out
