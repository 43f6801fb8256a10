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

from mvfx.heads.correspond import CorrespondConfig, CorrespondenceModel
from mvfx.heads.dataset import check_weights, pooled, scale, scaling
from mvfx.heads.metrics import average_precision, classification_scores, hit_at_k, mean_std
from mvfx.heads.plots import confusion_plot, roc_plot
from mvfx.heads.threads import with_training_threads
from mvfx.heads.torch_fit import FitConfig, fit
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store

TOP_K = (1, 3, 5)
MATCH_CLASSES = ["mismatch", "match"]


@dataclasses.dataclass
class PairData:
    pairs: pd.DataFrame
    video: np.ndarray  # [P, Dv] pooled video features of each pair's video clip
    music: np.ndarray  # [P, Dm]
    emotions: list[str]

    def tensors(self, rows: np.ndarray, stats: dict) -> tuple[torch.Tensor, ...]:
        p = self.pairs.iloc[rows]
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        return (
            as_t(scale(self.video[rows], stats["video"])), as_t(scale(self.music[rows], stats["music"])),
            torch.as_tensor(p["match"].to_numpy()), torch.as_tensor([self.emotions.index(x) for x in p["video_label"]]),
            torch.as_tensor([self.emotions.index(x) for x in p["music_label"]]),
        )


def load_pairs(store, pairs_csv: str, video_extractor: str, music_extractor: str) -> PairData:
    pairs = pd.read_csv(pairs_csv, dtype={"video_clip": str, "music_clip": str})
    have_v, have_m = set(store.clip_ids(video_extractor)), set(store.clip_ids(music_extractor))
    pairs = pairs[pairs["video_clip"].isin(have_v) & pairs["music_clip"].isin(have_m)].reset_index(drop=True)
    if pairs["match"].nunique() < 2 or len(pairs) < 10:
        raise MvfxError(f"{pairs_csv}: {len(pairs)} usable pairs (both kinds needed, at least 10) with features in the store")
    return PairData(pairs, pooled(store, video_extractor, pairs["video_clip"].tolist()),
                    pooled(store, music_extractor, pairs["music_clip"].tolist()),
                    sorted(set(pairs["video_label"]) | set(pairs["music_label"])))


def fit_correspond(data: PairData, train: np.ndarray, val: np.ndarray, cfg: CorrespondConfig):
    stats = {"video": scaling(data.video[train]), "music": scaling(data.music[train])}
    torch.manual_seed(cfg.seed)
    model = CorrespondenceModel(data.video.shape[1], data.music.shape[1], len(data.emotions), cfg)
    tr, va = data.tensors(train, stats), data.tensors(val, stats)
    fit(model, len(train), lambda b: model.loss(model(tr[0][b], tr[1][b]), tr[2][b], tr[3][b], tr[4][b]),
        lambda: float(model.loss(model(va[0], va[1]), *va[2:])), FitConfig(cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.seed))
    return model, stats


def retrieval_scores(scores: np.ndarray, query_labels: list[str], gallery_labels: list[str]) -> dict:
    """Top-K hit rates and mAP when each query (row) ranks the gallery (columns) by ``scores``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = np.array(gallery_labels)[order] == np.array(query_labels)[:, None]
    scores = {f"top{k}": float(np.mean([hit_at_k(r, k) for r in relevant])) for k in TOP_K}
    scores["map"] = float(np.mean([average_precision(r) for r in relevant]))
    return scores


def _embed_test(model, data: PairData, rows: np.ndarray, stats: dict) -> dict:
    p = data.pairs.iloc[rows]
    videos = p.drop_duplicates("video_clip").index.to_numpy()
    music = p.drop_duplicates("music_clip").index.to_numpy()
    with torch.no_grad():
        zv = model.video(torch.as_tensor(scale(data.video[videos], stats["video"]), dtype=torch.float32)).numpy()
        zm = model.music(torch.as_tensor(scale(data.music[music], stats["music"]), dtype=torch.float32)).numpy()
        scores = model.pair_scores(torch.as_tensor(zv), torch.as_tensor(zm)).numpy()  # [videos, music]
    vl, ml = data.pairs["video_label"][videos].tolist(), data.pairs["music_label"][music].tolist()
    return {"video_to_music": retrieval_scores(scores, vl, ml), "music_to_video": retrieval_scores(scores.T, ml, vl)}


def _validation_split(rows: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """15% of the pair groups among ``rows`` for early stopping, the rest to fit."""
    from sklearn.model_selection import GroupShuffleSplit

    fit_idx, val_idx = next(GroupShuffleSplit(n_splits=1, test_size=0.15, random_state=seed).split(rows, groups=groups[rows]))
    return rows[fit_idx], rows[val_idx]


def _group_folds(data: PairData, k: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    y, groups = data.pairs["match"].to_numpy(), data.pairs["group"].to_numpy()
    for train, test in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups):
        yield (*_validation_split(train, groups, seed), test)


@with_training_threads
def train_correspond(
    store_path: str, pairs_csv: str, video_extractor: str, music_extractor: str, out: str, folds: int = 5,
    seed: int = 0, cfg: CorrespondConfig | None = None, on_fold=None,
) -> dict:
    started = time.perf_counter()
    cfg = cfg or CorrespondConfig(seed=seed)
    store = open_store(store_path)
    random = check_weights(store, [video_extractor, music_extractor])
    data = load_pairs(store, pairs_csv, video_extractor, music_extractor)
    y = data.pairs["match"].to_numpy()
    proba, tested, fold_rows = np.zeros(len(y)), np.zeros(len(y), bool), []
    for fold, (train, val, test) in enumerate(_group_folds(data, folds, seed)):
        model, stats = fit_correspond(data, train, val, cfg)
        with torch.no_grad():
            v, m = data.tensors(test, stats)[:2]
            proba[test] = model.match_probability(model(v, m)).numpy()
        tested[test] = True
        scores = classification_scores(y[test], np.stack([1 - proba[test], proba[test]], axis=1), MATCH_CLASSES)
        row = {"fold": fold, "test_pairs": int(len(test)), **scores, "retrieval": _embed_test(model, data, test, stats)}
        fold_rows.append(row)
        if on_fold:
            on_fold(row)
    both = np.stack([1 - proba[tested], proba[tested]], axis=1)
    metrics = {
        "aggregate": {m: mean_std([f[m] for f in fold_rows]) for m in ("accuracy", "f1", "roc_auc")},
        "retrieval": {d: {m: mean_std([f["retrieval"][d][m] for f in fold_rows]) for m in ("top1", "top3", "top5", "map")}
                      for d in ("video_to_music", "music_to_video")},
        "pooled": classification_scores(y[tested], both, MATCH_CLASSES),
        "chance_accuracy": float(max(y.mean(), 1 - y.mean())), "n_pairs": int(len(y)), "emotions": data.emotions,
        "folds": fold_rows,
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model": "correspond", "store": str(store_path), "pairs": str(pairs_csv), "features": [video_extractor, music_extractor],
              "video_features": video_extractor, "music_features": music_extractor, "task": f"match ({cfg.objective})",
              "folds": folds, "seed": seed, "correspond": dataclasses.asdict(cfg), "random_weight_features": random}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    data.pairs.assign(p_match=proba).to_csv(out_dir / "predictions.csv", index=False)
    confusion_plot(out_dir / "confusion.png", np.array(metrics["pooled"]["confusion"]), MATCH_CLASSES,
                   f"match accuracy {metrics['pooled']['accuracy']:.2f} (chance {metrics['chance_accuracy']:.2f})")
    roc_plot(out_dir / "roc.png", y[tested], both, MATCH_CLASSES, "matched vs mismatched (out of fold)")
    model, stats = fit_correspond(data, *_validation_split(np.arange(len(y)), data.pairs["group"].to_numpy(), seed), cfg)
    torch.save({"state_dict": model.state_dict(), "config": dataclasses.asdict(cfg), "dims": [data.video.shape[1], data.music.shape[1]],
                "emotions": data.emotions, "video_features": video_extractor, "music_features": music_extractor,
                "standardiser": {k: [np.asarray(a).tolist() for a in v] for k, v in stats.items()},
                "labels": dict(zip(data.pairs["video_clip"], data.pairs["video_label"]))}, out_dir / "model.pt")
    metrics["seconds"] = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_model(folder: str | Path) -> tuple[CorrespondenceModel, dict]:
    path = Path(folder) / "model.pt"
    if not path.is_file():
        raise MvfxError(f"{folder}: no model.pt (train one with `mvfx train correspond`)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = CorrespondenceModel(*saved["dims"], len(saved["emotions"]), CorrespondConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved


def embed_store(store, model: CorrespondenceModel, saved: dict) -> dict[str, dict[str, np.ndarray]]:
    """{"video": {clip: unit vector}, "music": {...}} for every clip of the store with that modality's features."""
    out = {}
    for side, tower in (("video", model.video), ("music", model.music)):
        clips = store.clip_ids(saved[f"{side}_features"])
        x = scale(pooled(store, saved[f"{side}_features"], clips), saved["standardiser"][side]) if clips else np.zeros((0, 1))
        with torch.no_grad():
            z = tower(torch.as_tensor(x, dtype=torch.float32)).numpy() if clips else np.zeros((0, model.cfg.embed))
        out[side] = dict(zip(clips, z))
    return out
