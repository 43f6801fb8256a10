"""`mvfx train fusion`: the late-fusion emotion classifier (optionally an ensemble), from store + labels to a run folder."""
from __future__ import annotations

import time

import numpy as np

from mvfx.heads.data.dataset import check_weights, class_folds, clip_level_features
from mvfx.heads.data.labels import class_labels
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import class_summary, classification_scores, in_columns
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


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
    known = class_labels(labels, store, extractors)
    classes, y, named = known.classes, known.codes, known.names
    features = {e: clip_level_features(store, e, known.clip_ids) for e in extractors}
    run = RunFolder(out, run_config(head, store, extractors, folds, seed, labels=str(labels), task="emotion class",
                                    feature_sets=feature_sets, use_split=use_split, random_weight_features=random), started)
    members = [",".join(s) for s in feature_sets]
    main = "ensemble" if len(members) > 1 else members[0]
    oof = {name: np.zeros((len(y), len(classes))) for name in [*members, "ensemble"]}
    fold_rows, tested = [], np.zeros(len(y), bool)
    splits = class_folds(named, known.table["split"] if use_split else None, folds, seed)
    for fold, model, test in cross_validate(head, features, named, splits):
        probas = [in_columns(p, model.classes_, classes) for p in model.member_proba(take(features, test))]
        for name, proba in zip(members, probas):
            oof[name][test] = proba
        oof["ensemble"][test] = np.mean(probas, axis=0)
        tested[test] = True
        scores = {name: classification_scores(y[test], oof[name][test], classes) for name in oof}
        fold_rows.append({"fold": fold, "test_clips": known.table["clip_id"][test].tolist(), "scores": scores})
        if on_fold:
            on_fold({"fold": fold, **scores[main]})
    summaries = {name: class_summary([f["scores"][name] for f in fold_rows], y[tested], oof[name][tested], classes) for name in oof}
    metrics = {
        "classes": classes, "main": main, "n_clips": int(tested.sum()),
        "aggregate": {name: s["aggregate"] for name, s in summaries.items()},
        "pooled": {name: s["pooled"] for name, s in summaries.items()},
        "chance_accuracy": float(np.bincount(y[tested]).max() / tested.sum()),
        "folds": fold_rows,
    }
    run.class_predictions(known, tested, oof[main], metrics["pooled"][main], main)
    run.final_model(head, store, extractors, {"task": "classification", "target": "label", "classes": classes}, features, named)
    return run.finish(metrics)
