"""One training run of a regression head, from store + labels to a run folder with a saved model."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone

from mvfx.heads import lasso
from mvfx.heads.dataset import build, check_weights
from mvfx.heads.estimator import Head
from mvfx.heads.labels import read_labels
from mvfx.heads.lstm import pretrain_targets
from mvfx.heads.regression import cross_validate_clips, summarise, write_run
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


@with_training_threads
def train_regression(
    store_path: str, labels: str, head: Head, target: str, out: str, folds: int = 5, seed: int = 0,
    where: dict[str, str] | None = None, pretrain_labels: dict[str, str] | None = None, on_fold=None,
) -> dict:
    """Cross-validate ``head`` (a LassoHead or LstmHead), fit it on every clip, write the run folder and model/."""
    started = time.perf_counter()
    store = open_store(store_path)
    extractors = list(head.features)
    random = check_weights(store, extractors)
    clips = build(store, extractors, read_labels(labels, target, where))
    pretrain = pretrain_targets(clips, {e: read_labels(p, target, where) for e, p in (pretrain_labels or {}).items()})
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": head.kind, **store.reference(), "labels": str(labels), "features": extractors, "target": target,
        "folds": folds, "seed": seed, "where": where or {}, "random_weight_features": random, "params": head.get_params(),
        "pretrain_labels": pretrain_labels or {},
    }
    result, fold_models = cross_validate_clips(head, clips, folds, seed, pretrain, on_fold)
    metrics = summarise(result, clips)
    fit_params = {"modality_targets": pretrain} if pretrain else {}  # PAIR's pre-training ratings (LstmHead only)
    final = clone(head).fit(clips, **fit_params).with_provenance(store, extractors)
    final.training_ = {"task": "regression", "target": target, "grid_step_s": float(np.median(clips[0].times[:, 1] - clips[0].times[:, 0]))}
    final.save(out_dir / "model")
    if head.kind == "lasso":
        metrics["alphas"] = [m.alpha_ for m in fold_models]
        metrics["top_coefficients"] = lasso.write_coefficients(out_dir, lasso.feature_names(store, extractors),
                                                               [m.coef_ for m in fold_models])
    metrics["seconds"] = time.perf_counter() - started
    write_run(out_dir, config, metrics, result, clips)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
