"""The run folder that every `mvfx train` command writes, written the same way for all:

- ``config.json``: what was run (the model's kind, the store, the labels, the feature sets, folds, seed, the
  head's parameters, ...), written first;
- ``predictions.csv``: the out-of-fold predictions, and the run's PNG plots;
- ``model/``: the final model, fitted on every clip (``Head.save``; ``load_head`` reads it back);
- ``metrics.json``: the scores and the run's seconds, written once, last: a folder with metrics.json holds a
  finished run (``mvfx report`` reads config.json and metrics.json).
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
from mvfx.stores.base import FeatureStore


def run_config(head: Head, store: FeatureStore, features: Iterable[str], folds: int, seed: int, **more: Any) -> dict:
    """config.json of a run of ``head`` on ``store``'s ``features``; ``more``: what else the run was given."""
    return {"model": head.kind, **store.reference(), "features": list(features), "folds": folds, "seed": seed,
            "params": head.get_params(), **more}


class RunFolder:
    """One run's output folder (``out``, created with its config.json); ``started``: when the run began
    (``time.perf_counter()``), for metrics.json's seconds."""

    def __init__(self, out: str | Path, config: dict, started: float) -> None:
        self.path, self.started = Path(out), started
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

    def class_predictions(self, labels: ClassLabels, rows: np.ndarray, proba: np.ndarray, pooled: dict, name: str) -> None:
        """A clip classifier's predictions.csv (label, predicted class and every class's probability of each clip of
        ``rows``), confusion and ROC plots, from the out-of-fold ``proba`` of the model called ``name``."""
        classes, proba = labels.classes, proba[rows]
        self.table("predictions.csv", pd.DataFrame({
            "clip_id": labels.table["clip_id"][rows], "label": labels.table["label"][rows],
            "predicted": [classes[i] for i in proba.argmax(axis=1)], **{f"p_{c}": proba[:, i] for i, c in enumerate(classes)}}))
        self.class_plots(classes, labels.codes[rows], proba, pooled["confusion"],
                         f"{name}: accuracy {pooled['accuracy']:.2f}, macro F1 {pooled['f1']:.2f}",
                         f"{name}: one-vs-rest ROC (out of fold)")

    def final_model(self, head: Head, store: FeatureStore, features: Iterable[str], training: dict, *data: Any, **fit_params: Any) -> Head:
        """A clone of ``head`` fitted on ``data`` (every clip), with the provenance of ``store``'s ``features`` and
        ``training`` (what prediction needs to know), saved in model/."""
        final = clone(head).fit(*data, **fit_params).with_provenance(store, list(features))
        final.training_ = training
        final.save(self.path / "model")
        return final

    def finish(self, metrics: dict) -> dict:
        """Write metrics.json, with the seconds since the run began; returns ``metrics``."""
        metrics["seconds"] = time.perf_counter() - self.started
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics
