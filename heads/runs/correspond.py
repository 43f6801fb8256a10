"""`mvfx train correspond`: cross-validated match metrics and retrieval of the correspondence model, its run
folder and final model (queries and exports of a trained model: ``heads.retrieval``).

Folds are over pair groups (the pairs that share clips, ``pairs.shared_clip_groups``:
a matched pair, or the two pairs of one music swap), stratified by match, so
no clip is in both the training and the test pairs of a fold. Retrieval is evaluated inside each test fold: every test
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
from mvfx.heads.metrics import TOP_K, mean_std, retrieval_scores
from mvfx.heads.models.correspond import CorrespondHead, validation_split
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.runs.out_of_fold import out_of_fold
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
    y, pairs = data.y, data.pairs
    result = out_of_fold(head, data.x, y, y, MATCH_CLASSES, _group_folds(data, folds, seed), pairs[["video_clip", "music_clip"]].values.tolist(),
                         lambda model, x: {head.kind: model.predict_proba(x)}, head.kind, on_fold,
                         lambda model, test: {"test_pairs": len(test), "retrieval": _embed_test(model, data, test)})
    models, tested = result.models(), result.tested
    run.table("predictions.csv", pairs.assign(p_match=result.proba[head.kind][:, 1]))
    scores = models[head.kind]["out_of_fold"]
    run.class_plots(MATCH_CLASSES, y[tested], result.proba[head.kind][tested], scores["confusion"],
                    f"match accuracy {scores['accuracy']:.2f} (chance {max(y.mean(), 1 - y.mean()):.2f})", "matched vs mismatched (out of fold)")
    run.final_model(head, store, head.features, {"task": "correspondence", "labels": dict(zip(pairs["video_clip"], pairs["video_label"]))},
                    data.x, y)
    retrieval = {d: {m: mean_std([f["scores"][head.kind]["retrieval"][d][m] for f in result.folds]) for m in (*(f"top{k}" for k in TOP_K), "map")}
                 for d in ("video_to_music", "music_to_video")}
    clips, emotions = set(pairs["video_clip"]) | set(pairs["music_clip"]), set(pairs["video_label"]) | set(pairs["music_label"])
    return run.finish("match", head.kind, models, result.folds, len(clips), retrieval=retrieval, chance_accuracy=float(max(y.mean(), 1 - y.mean())),
                      n_pairs=int(len(y)), emotions=sorted(emotions))
