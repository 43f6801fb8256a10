"""Runs of the correspondence model: cross-validated match metrics and retrieval, final model, queries, export.

Folds are over pair groups (a matched pair, or the two pairs of one music
swap), stratified by match, so no clip is in both the training and the test
pairs of a fold. Retrieval is evaluated inside each test fold: every test
video queries the test music (and the other way round), ranked by the
model's own score (cosine similarity for ``retrieve``, P(match) for
``classify``); a result counts as relevant when it carries the query's
emotion; top-1/3/5 hit rate and mAP.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone

from mvfx.heads.correspond import CorrespondHead, validation_split
from mvfx.heads.dataset import check_weights, pooled
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import average_precision, classification_scores, hit_at_k, mean_std
from mvfx.heads.plots import confusion_plot, roc_plot
from mvfx.heads.threads import with_training_threads
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store

TOP_K = (1, 3, 5)
MATCH_CLASSES = ["mismatch", "match"]


@dataclasses.dataclass
class PairData:
    pairs: pd.DataFrame
    x: dict[str, np.ndarray]  # CorrespondHead's input: video, music, video_label, music_label, group per pair
    y: np.ndarray  # match (0/1)


def load_pairs(store, pairs_csv: str, video_extractor: str, music_extractor: str) -> PairData:
    pairs = pd.read_csv(pairs_csv, dtype={"video_clip": str, "music_clip": str})
    have_v, have_m = set(store.clip_ids(video_extractor)), set(store.clip_ids(music_extractor))
    pairs = pairs[pairs["video_clip"].isin(have_v) & pairs["music_clip"].isin(have_m)].reset_index(drop=True)
    if pairs["match"].nunique() < 2 or len(pairs) < 10:
        raise MvfxError(f"{pairs_csv}: {len(pairs)} usable pairs (both kinds needed, at least 10) with features in the store")
    x = {"video": pooled(store, video_extractor, pairs["video_clip"].tolist()),
         "music": pooled(store, music_extractor, pairs["music_clip"].tolist()),
         **{k: pairs[k].to_numpy() for k in ("video_label", "music_label", "group")}}
    return PairData(pairs, x, pairs["match"].to_numpy())


def retrieval_scores(scores: np.ndarray, query_labels: list[str], gallery_labels: list[str]) -> dict:
    """Top-K hit rates and mAP when each query (row) ranks the gallery (columns) by ``scores``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = np.array(gallery_labels)[order] == np.array(query_labels)[:, None]
    scores = {f"top{k}": float(np.mean([hit_at_k(r, k) for r in relevant])) for k in TOP_K}
    scores["map"] = float(np.mean([average_precision(r) for r in relevant]))
    return scores


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
    started = time.perf_counter()
    store = open_store(store_path)
    random = check_weights(store, head.features)
    data = load_pairs(store, pairs_csv, head.video_features, head.music_features)
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
        "aggregate": {m: mean_std([f[m] for f in fold_rows]) for m in ("accuracy", "f1", "roc_auc")},
        "retrieval": {d: {m: mean_std([f["retrieval"][d][m] for f in fold_rows]) for m in ("top1", "top3", "top5", "map")}
                      for d in ("video_to_music", "music_to_video")},
        "pooled": classification_scores(y[tested], both, MATCH_CLASSES),
        "chance_accuracy": float(max(y.mean(), 1 - y.mean())), "n_pairs": int(len(y)),
        "emotions": sorted(set(data.x["video_label"]) | set(data.x["music_label"])), "folds": fold_rows,
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": "correspond", **store.reference(), "pairs": str(pairs_csv), "features": head.features,
              "video_features": head.video_features, "music_features": head.music_features, "task": f"match ({head.objective})",
              "folds": folds, "seed": seed, "params": head.get_params(), "random_weight_features": random}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    data.pairs.assign(p_match=proba).to_csv(out_dir / "predictions.csv", index=False)
    confusion_plot(out_dir / "confusion.png", np.array(metrics["pooled"]["confusion"]), MATCH_CLASSES,
                   f"match accuracy {metrics['pooled']['accuracy']:.2f} (chance {metrics['chance_accuracy']:.2f})")
    roc_plot(out_dir / "roc.png", y[tested], both, MATCH_CLASSES, "matched vs mismatched (out of fold)")
    final = clone(head).fit(data.x, y).with_provenance(store, head.features)
    final.training_ = {"task": "correspondence", "labels": dict(zip(data.pairs["video_clip"], data.pairs["video_label"]))}
    final.save(out_dir / "model")
    metrics["seconds"] = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def embed_store(store, head: CorrespondHead) -> dict[str, dict[str, np.ndarray]]:
    """{"video": {clip: unit vector}, "music": {...}} for every clip of the store with that modality's features."""
    out = {}
    for side, extractor in (("video", head.video_features), ("music", head.music_features)):
        clips = store.clip_ids(extractor)
        z = head.embed_side(side, pooled(store, extractor, clips)) if clips else np.zeros((0, head.embed), np.float32)
        out[side] = dict(zip(clips, z))
    return out
