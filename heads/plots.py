"""PNG plots of runs (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mvfx.heads.metrics import mean_std, spread


def trajectories_plot(path: Path, clips, predictions: dict[str, np.ndarray], target: str) -> None:
    """Predicted vs gold over time for a few clips, annotators faint behind (as in the MuVi figures)."""
    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 2.2 * len(clips)), sharey=True, squeeze=False)
    for ax, clip in zip(axes[:, 0], clips):
        t = clip.times[:, 0]
        for ratings in clip.gold.ratings:
            ax.plot(clip.gold.times[: len(ratings), 0], ratings, color="0.8", lw=0.8)
        ax.plot(t, clip.target, color="black", lw=1.8, label="gold (EWE)")
        ax.plot(t, predictions[clip.clip_id], color="tab:red", lw=1.5, label="predicted")
        ax.set_title(clip.clip_id, fontsize=9, loc="left")
        ax.set_ylabel(target)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fold_scores_plot(path: Path, folds: list[dict], ceiling: dict, target: str) -> None:
    """CCC, Pearson r and RMSE of each fold (``folds``: their scores, in fold order), with the inter-rater
    ``ceiling`` (mean, std) as a line."""
    names = ["ccc", "pearson", "rmse"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, name in zip(axes, names):
        values = np.array([f[name] for f in folds], float)
        ax.bar([str(k) for k in range(len(folds))], values, color="tab:blue")
        if name == "ccc" and np.isfinite(ceiling["mean"]):
            ax.axhline(ceiling["mean"], color="black", ls="--", lw=1, label="inter-rater")
            ax.legend(fontsize=8)
        ax.set_title(f"{name} {spread(mean_std(values))}", fontsize=9)
        ax.set_xlabel("fold")
    fig.suptitle(f"{target}: per-fold test scores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coefficients_plot(path: Path, names: list[str], mean: np.ndarray, std: np.ndarray) -> None:
    """Horizontal bars of the largest LASSO coefficients (standardised features), mean ± std over folds."""
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1))
    y = np.arange(len(names))[::-1]
    ax.barh(y, mean, xerr=std, color=["tab:red" if m > 0 else "tab:blue" for m in mean])
    ax.set_yticks(y, names, fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("coefficient per standard deviation of the feature")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_plot(path: Path, matrix: np.ndarray, classes: list[str], title: str) -> None:
    """Confusion matrix (rows: true class, columns: predicted), counts and row-normalised shading."""
    matrix = np.asarray(matrix)
    shade = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.0 * len(classes) + 1.5))
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if shade[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def roc_plot(path: Path, y: np.ndarray, proba: np.ndarray, classes: list[str], title: str) -> None:
    """One-vs-rest ROC curve per class (binary: of the positive class) from out-of-fold probabilities."""
    from sklearn.metrics import auc, roc_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    targets = [(1, classes[1])] if len(classes) == 2 else list(enumerate(classes))
    for k, name in targets:
        if (y == k).any() and (y != k).any():
            fpr, tpr, _ = roc_curve(y == k, proba[:, k])
            ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timeline_plot(path: Path, times: np.ndarray, series: dict[str, np.ndarray], title: str, ylabel: str) -> None:
    """A clip's predictions on its time line: one line per series (a class's probability, or a predicted curve)."""
    fig, ax = plt.subplots(figsize=(8, 2.8))
    centres = times.mean(axis=1)
    for name, values in series.items():
        ax.plot(centres, values, lw=1.6, marker="o" if len(centres) < 30 else None, ms=3, label=name)
    ax.set_xlim(float(times[0, 0]), float(times[-1, 1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9, loc="left")
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
