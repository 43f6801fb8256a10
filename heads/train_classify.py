"""A run of the late-fusion emotion classifier (optionally an ensemble), from store + labels to a run folder."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from mvfx.heads.classify import FusionHead
from mvfx.heads.dataset import check_weights, matched_clips, pooled
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import classification_scores, mean_std
from mvfx.heads.pairs import read_class_labels
from mvfx.heads.plots import confusion_plot, roc_plot
from mvfx.heads.threads import with_training_threads
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store

CLASS_METRICS = ("accuracy", "f1", "roc_auc")


def _folds(y: np.ndarray, splits: pd.Series | None, k: int, seed: int) -> list[tuple]:
    """(train, val, test) rows from the labels' split column, else (train, test) of stratified k-fold."""
    if splits is not None:
        rows = {name: np.flatnonzero(splits.to_numpy() == name) for name in ("train", "val", "test")}
        if any(len(r) == 0 for r in rows.values()):
            raise MvfxError("--use-split needs train, val and test rows in the labels' split column")
        return [(rows["train"], rows["val"], rows["test"])]
    from sklearn.model_selection import StratifiedKFold

    counts = np.unique(y, return_counts=True)[1]
    if counts.min() < k:
        raise MvfxError(f"the smallest class has {counts.min()} clips, fewer than --folds {k}")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _in_columns(proba: np.ndarray, have: list[str], classes: list[str]) -> np.ndarray:
    """A fold model's probabilities in the columns of every class (a class its training rows lacked gets 0)."""
    out = np.zeros((len(proba), len(classes)))
    out[:, [classes.index(c) for c in have]] = proba
    return out


def write_class_run(out: str | Path, config: dict, table: pd.DataFrame, classes: list[str], y: np.ndarray, tested: np.ndarray,
                    proba: np.ndarray, name: str, pooled_scores: dict) -> Path:
    """A classification run's folder: config.json, out-of-fold predictions.csv, confusion and ROC plots."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    pd.DataFrame({"clip_id": table["clip_id"][tested], "label": table["label"][tested],
                  "predicted": [classes[i] for i in proba[tested].argmax(axis=1)],
                  **{f"p_{c}": proba[tested][:, i] for i, c in enumerate(classes)}}).to_csv(out_dir / "predictions.csv", index=False)
    title = f"{name}: accuracy {pooled_scores['accuracy']:.2f}, macro F1 {pooled_scores['f1']:.2f}"
    confusion_plot(out_dir / "confusion.png", np.array(pooled_scores["confusion"]), classes, title)
    roc_plot(out_dir / "roc.png", y[tested], proba[tested], classes, f"{name}: one-vs-rest ROC (out of fold)")
    return out_dir


@with_training_threads
def train_fusion(
    store_path: str, labels: str, head: FusionHead, out: str, folds: int = 6, seed: int = 0, use_split: bool = False,
    on_fold=None,
) -> dict:
    """Cross-validate one late-fusion model per feature set and their probability-averaging ensemble; save it."""
    started = time.perf_counter()
    feature_sets = head.feature_sets
    store = open_store(store_path)
    extractors = sorted({e for s in feature_sets for e in s})
    random = check_weights(store, extractors)
    table = read_class_labels(labels)
    have = set.intersection(*(set(store.clip_ids(e)) for e in extractors))
    keep = matched_clips(table["clip_id"].tolist(), have, ", ".join(extractors))
    table = table[table["clip_id"].isin(keep)].sort_values("clip_id").reset_index(drop=True)
    classes = sorted(table["label"].unique())
    y = np.array([classes.index(label) for label in table["label"]])
    features = {e: pooled(store, e, table["clip_id"].tolist()) for e in extractors}
    named = table["label"].to_numpy()
    members = [",".join(s) for s in feature_sets]
    oof = {name: np.zeros((len(y), len(classes))) for name in [*members, "ensemble"]}
    fold_rows, tested = [], np.zeros(len(y), bool)
    splits = _folds(named, table["split"] if use_split else None, folds, seed)
    for fold, model, test in cross_validate(head, features, named, splits):
        probas = [_in_columns(p, model.classes_, classes) for p in model.member_proba(take(features, test))]
        for name, proba in zip(members, probas):
            oof[name][test] = proba
        oof["ensemble"][test] = np.mean(probas, axis=0)
        tested[test] = True
        scores = {name: classification_scores(y[test], oof[name][test], classes) for name in oof}
        fold_rows.append({"fold": fold, "test_clips": table["clip_id"][test].tolist(), "scores": scores})
        if on_fold:
            on_fold({"fold": fold, **scores["ensemble" if len(members) > 1 else members[0]]})
    main = "ensemble" if len(members) > 1 else members[0]
    metrics = {
        "classes": classes, "main": main, "n_clips": int(tested.sum()),
        "aggregate": {name: {m: mean_std([f["scores"][name][m] for f in fold_rows]) for m in CLASS_METRICS} for name in oof},
        "pooled": {name: classification_scores(y[tested], oof[name][tested], classes) for name in oof},
        "chance_accuracy": float(np.bincount(y[tested]).max() / tested.sum()),
        "folds": fold_rows,
    }
    config = {"model": "fusion", **store.reference(), "labels": str(labels), "features": extractors, "task": "emotion class",
              "feature_sets": feature_sets, "folds": folds, "use_split": use_split, "seed": seed,
              "params": head.get_params(), "random_weight_features": random}
    out_dir = write_class_run(out, config, table, classes, y, tested, oof[main], main, metrics["pooled"][main])
    final = clone(head).fit(features, named).with_provenance(store, extractors)
    final.training_ = {"task": "classification", "target": "label", "classes": classes}
    final.save(out_dir / "model")
    metrics["seconds"] = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
