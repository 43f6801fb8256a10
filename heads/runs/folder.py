"""The run folder that every `mvfx train` command writes, written the same way for all:

- ``config.json``: what was run (the model's kind, the store, the labels, the feature sets, folds, seed, the
  head's parameters, ...), written first;
- ``predictions.csv``: the out-of-fold predictions, and the run's PNG plots;
- ``model/``: the final model, fitted on every clip (``saved.save``; ``saved.load_head`` reads it back);
- ``metrics.json``: the scores and the run's seconds, written once, last, in the one format of every run kind
  (``finish``): a folder with metrics.json holds a finished run (``mvfx report`` reads config.json and metrics.json).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from mvfx.heads.data.labels import ClassLabels
from mvfx.heads.estimator import Head
from mvfx.heads.metrics import METRICS_FORMAT, METRICS_VERSION
from mvfx.heads.provenance import with_provenance
from mvfx.heads.saved import save
from mvfx.stores.base import FeatureStore


def run_config(head: Head, store: FeatureStore, features: Iterable[str], folds: int, seed: int, **more: Any) -> dict:
    """config.json of a run of ``head`` on ``store``'s ``features``; ``more``: what else the run was given."""
    return {"model": head.kind, **store.reference(), "features": list(features), "folds": folds, "seed": seed,
            "params": head.get_params(), **more}


class RunFolder:
    """One run's output folder (``out``, created with its config.json); ``started``: when the run began
    (``time.perf_counter()``), for metrics.json's seconds."""

    def __init__(self, out: str | Path, config: dict, started: float) -> None:
        self.path, self.started, self.model = Path(out), started, config["model"]
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(config, indent=2))

    def table(self, name: str, frame: pd.DataFrame) -> Path:
        frame.to_csv(self.path / name, index=False)
        return self.path / name

    def class_plots(self, classes: list[str], y: np.ndarray, proba: np.ndarray, confusion: list, title: str, roc_title: str) -> None:
        """confusion.png (``confusion``, rows: true class) and roc.png (one-vs-rest, from ``proba`` [N, classes] of ``y`` [N])."""
        from mvfx.heads.plots import confusion_plot, roc_plot

        confusion_plot(self.path / "confusion.png", np.array(confusion), classes, title)
        roc_plot(self.path / "roc.png", y, proba, classes, roc_title)

    def class_predictions(self, labels: ClassLabels, rows: np.ndarray, proba: np.ndarray, scores: dict, name: str) -> None:
        """A clip classifier's predictions.csv (label, predicted class and every class's probability of each clip of
        ``rows``), confusion and ROC plots, from the out-of-fold ``proba`` of the model called ``name`` and their
        ``scores`` (``classification_scores``)."""
        classes, proba = labels.classes, proba[rows]
        self.table("predictions.csv", pd.DataFrame({
            "clip_id": labels.table["clip_id"][rows], "label": labels.table["label"][rows],
            "predicted": [classes[i] for i in proba.argmax(axis=1)], **{f"p_{c}": proba[:, i] for i, c in enumerate(classes)}}))
        self.class_plots(classes, labels.codes[rows], proba, scores["confusion"],
                         f"{name}: accuracy {scores['accuracy']:.2f}, macro F1 {scores['f1']:.2f}",
                         f"{name}: one-vs-rest ROC (out of fold)")

    def final_model(self, head: Head, store: FeatureStore, features: Iterable[str], training: dict, *data: Any, **fit_params: Any) -> Head:
        """A clone of ``head`` fitted on ``data`` (every clip), with the provenance of ``store``'s ``features`` and
        ``training`` (what prediction needs to know), saved in model/."""
        final = with_provenance(clone(head).fit(*data, **fit_params), store, list(features))
        final.training_ = training
        save(final, self.path / "model")
        return final

    def finish(self, task: str, main: str, models: dict[str, dict], folds: list[dict], n_clips: int, **more: Any) -> dict:
        """Write metrics.json, the same for every run kind, and return it:

        - ``format`` ("mvfx-metrics"), ``format_version`` (2), ``model`` (the kind), ``task``;
        - ``models``: per model the run scored (one; a fusion's members and ensemble; MVF from scratch and
          pre-trained), ``aggregate`` (each metric's mean, std, and in how many of how many folds it is defined)
          and, for cross-validated runs, ``out_of_fold`` (every fold's test predictions scored together);
        - ``main``: the model ``mvfx report`` compares;
        - ``folds``: per test fold, ``fold``, ``test_clips`` and ``scores`` per model;
        - ``n_clips``, ``seconds``, and ``more``: what the run kind adds (its classes, ceiling, retrieval, ...)."""
        metrics = {"format": METRICS_FORMAT, "format_version": METRICS_VERSION, "model": self.model, "task": task, "main": main,
                   "models": models, "folds": folds, "n_clips": n_clips, **more, "seconds": time.perf_counter() - self.started}
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics
