"""`mvfx train fusion`: the late-fusion emotion classifier (optionally an ensemble), from store + labels to a run folder."""
from __future__ import annotations

import time

import numpy as np

from mvfx.heads.data.dataset import check_weights, class_folds, clip_level_features
from mvfx.heads.data.labels import class_labels
from mvfx.heads.metrics import in_columns
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.runs.out_of_fold import out_of_fold
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


@with_training_threads
def train_fusion(
    store_path: str, labels: str, head: FusionHead, out: str, folds: int = 6, seed: int = 0, use_split: bool = False,
    on_fold=None,
) -> dict:
    """Cross-validate one late-fusion model per feature set and, with several, their probability-averaging
    ensemble (the main model then); save it."""
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

    def probabilities(model: FusionHead, x: dict) -> dict[str, np.ndarray]:
        probas = dict(zip(members, (in_columns(p, model.classes_, classes) for p in model.member_proba(x))))
        return probas | ({"ensemble": np.mean(list(probas.values()), axis=0)} if len(members) > 1 else {})

    splits = class_folds(named, known.table["split"] if use_split else None, folds, seed)
    result = out_of_fold(head, features, named, y, classes, splits, [[c] for c in known.clip_ids], probabilities, main, on_fold)
    models = result.models()
    run.class_predictions(known, result.tested, result.proba[main], models[main]["out_of_fold"], main)
    run.final_model(head, store, extractors, {"task": "classification", "target": "label", "classes": classes}, features, named)
    return run.finish("classification", main, models, result.folds, int(result.tested.sum()), classes=classes,
                      chance_accuracy=float(np.bincount(y[result.tested]).max() / result.tested.sum()))
