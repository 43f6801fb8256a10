"""`mvfx train correspond`: cross-validated match metrics and retrieval of the correspondence model, its run
folder and final model (queries and exports of a trained model: ``heads.retrieval``).

Folds are over pair groups (a matched pair, or the two pairs of one music
swap), stratified by match, so no clip is in both the training and the test
pairs of a fold. Retrieval is evaluated inside each test fold: every test
video queries the test music (and the other way round), ranked by the
model's own score (cosine similarity for ``retrieve``, P(match) for
``classify``); a result counts as relevant when it carries the query's
emotion; top-1/3/5 hit rate and mAP.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from mvfx.heads.data.dataset import check_weights
from mvfx.heads.data.pairs import PairData, load_pairs
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import TOP_K, class_summary, classification_scores, mean_std, retrieval_scores
from mvfx.heads.models.correspond import CorrespondHead, validation_split
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store

MATCH_CLASSES = ["mismatch", "match"]


def _embed_test(head: CorrespondHead, data: PairData, rows: np.ndarray) -> dict:
    p = data.pairs.iloc[rows]
    videos = p.drop_duplicates("video_clip").index.to_numpy()
    music = p.drop_duplicates("music_clip").index.to_numpy()
    zv, zm = head.embed_side("video", data.x["video"][videos]), head.embed_side("music", data.x["music"][music])
    with torch.no_grad():
        scores = head.model_.pair_scores(torch.as_tensor(zv), torch.as_tensor(zm)).numpy()  # [videos, music]
    vl, ml = data.pairs["video_label"][videos].tolist(), data.pairs["music_label"][music].tolist()
    return {"video_to_music": retrieval_scores(scores, vl, ml), "music_to_video": retrieval_scores(scores.T, ml, vl)}


def _group_folds(data: PairData, k: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    groups = data.x["group"]
    for train, test in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(data.y)), data.y, groups):
        yield (*validation_split(train, groups, seed), test)


@with_training_threads
def train_correspond(store_path: str, pairs_csv: str, head: CorrespondHead, out: str, folds: int = 5, seed: int = 0,
                     on_fold=None) -> dict:
    """Cross-validate ``head`` on the pairs of ``pairs_csv`` (match scores and retrieval per test fold); save it fitted on every pair."""
    started = time.perf_counter()
    store = open_store(store_path)
    random = check_weights(store, head.features)
    data = load_pairs(store, pairs_csv, head.video_features, head.music_features)
    run = RunFolder(out, run_config(head, store, head.features, folds, seed, pairs=str(pairs_csv), video_features=head.video_features,
                                    music_features=head.music_features, task=f"match ({head.objective})", random_weight_features=random),
                    started)
    y = data.y
    proba, tested, fold_rows = np.zeros(len(y)), np.zeros(len(y), bool), []
    for fold, model, test in cross_validate(head, data.x, y, _group_folds(data, folds, seed)):
        proba[test] = model.predict_proba(take(data.x, test))[:, 1]
        tested[test] = True
        scores = classification_scores(y[test], np.stack([1 - proba[test], proba[test]], axis=1), MATCH_CLASSES)
        row = {"fold": fold, "test_pairs": int(len(test)), **scores, "retrieval": _embed_test(model, data, test)}
        fold_rows.append(row)
        if on_fold:
            on_fold(row)
    both = np.stack([1 - proba[tested], proba[tested]], axis=1)
    metrics = {
        **class_summary(fold_rows, y[tested], both, MATCH_CLASSES),
        "retrieval": {d: {m: mean_std([f["retrieval"][d][m] for f in fold_rows]) for m in (*(f"top{k}" for k in TOP_K), "map")}
                      for d in ("video_to_music", "music_to_video")},
        "chance_accuracy": float(max(y.mean(), 1 - y.mean())), "n_pairs": int(len(y)),
        "emotions": sorted(set(data.x["video_label"]) | set(data.x["music_label"])), "folds": fold_rows,
    }
    run.table("predictions.csv", data.pairs.assign(p_match=proba))
    run.class_plots(MATCH_CLASSES, y[tested], both, metrics["pooled"]["confusion"],
                    f"match accuracy {metrics['pooled']['accuracy']:.2f} (chance {metrics['chance_accuracy']:.2f})",
                    "matched vs mismatched (out of fold)")
    run.final_model(head, store, head.features, {"task": "correspondence", "labels": dict(zip(data.pairs["video_clip"], data.pairs["video_label"]))},
                    data.x, y)
    return run.finish(metrics)
