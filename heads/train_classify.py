"""A run of the late-fusion emotion classifier (optionally an ensemble), from store + labels to a run folder."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mvfx.heads.classify import FusionConfig, fit_fusion, inner_validation, predict_proba
from mvfx.heads.dataset import check_weights, matched_clips, pooled
from mvfx.heads.metrics import classification_scores, mean_std
from mvfx.heads.pairs import read_class_labels
from mvfx.heads.plots import confusion_plot, roc_plot
from mvfx.heads.threads import with_training_threads
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store

CLASS_METRICS = ("accuracy", "f1", "roc_auc")


def _folds(y: np.ndarray, splits: pd.Series | None, k: int, seed: int):
    """(train, val, test) row indices per fold: the split column, or stratified k-fold with an inner validation split."""
    if splits is not None:
        rows = {name: np.flatnonzero(splits.to_numpy() == name) for name in ("train", "val", "test")}
        if any(len(r) == 0 for r in rows.values()):
            raise MvfxError("--use-split needs train, val and test rows in the labels' split column")
        return [(rows["train"], rows["val"], rows["test"])]
    from sklearn.model_selection import StratifiedKFold

    if np.bincount(y).min() < k:
        raise MvfxError(f"the smallest class has {np.bincount(y).min()} clips, fewer than --folds {k}")
    folds = []
    for train, test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        fit_rows, val_rows = inner_validation(train, y, seed)
        folds.append((fit_rows, val_rows, test))
    return folds


@with_training_threads
def train_fusion(
    store_path: str, labels: str, feature_sets: list[list[str]], out: str, folds: int = 6, seed: int = 0,
    use_split: bool = False, cfg: FusionConfig | None = None, on_fold=None,
) -> dict:
    """Cross-validate one late-fusion model per feature set and their probability-averaging ensemble."""
    started = time.perf_counter()
    cfg = cfg or FusionConfig(seed=seed)
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
    members = [",".join(s) for s in feature_sets]
    oof = {name: np.zeros((len(y), len(classes))) for name in [*members, "ensemble"]}
    fold_rows, tested = [], np.zeros(len(y), bool)
    for fold, (train, val, test) in enumerate(_folds(y, table["split"] if use_split else None, folds, seed)):
        probas = []
        for member in feature_sets:
            inputs = [features[e] for e in member]
            model, stats = fit_fusion(inputs, y, train, val, len(classes), cfg)
            probas.append(predict_proba(model, inputs, test, stats))
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
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": "fusion", "store": str(store_path), "labels": str(labels), "features": extractors, "task": "emotion class",
              "feature_sets": feature_sets, "folds": folds, "use_split": use_split, "seed": seed,
              "fusion": dataclasses.asdict(cfg), "random_weight_features": random}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    pd.DataFrame({"clip_id": table["clip_id"][tested], "label": table["label"][tested],
                  "predicted": [classes[i] for i in oof[main][tested].argmax(axis=1)],
                  **{f"p_{c}": oof[main][tested][:, i] for i, c in enumerate(classes)}}).to_csv(out_dir / "predictions.csv", index=False)
    title = f"{main}: accuracy {metrics['pooled'][main]['accuracy']:.2f}, macro F1 {metrics['pooled'][main]['f1']:.2f}"
    confusion_plot(out_dir / "confusion.png", np.array(metrics["pooled"][main]["confusion"]), classes, title)
    roc_plot(out_dir / "roc.png", y[tested], oof[main][tested], classes, f"{main}: one-vs-rest ROC (out of fold)")
    fit_rows, val_rows = inner_validation(np.arange(len(y)), y, seed)
    finals = [fit_fusion([features[e] for e in member], y, fit_rows, val_rows, len(classes), cfg) for member in feature_sets]
    torch.save({"members": feature_sets, "classes": classes,
                "standardiser": [[[a.tolist() for a in st] for st in stats] for _, stats in finals],
                "state_dicts": [model.state_dict() for model, _ in finals]}, out_dir / "model.pt")
    metrics["seconds"] = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
