"""Assemble training data from a store and labels: features aligned to each clip's label grid, clip-level
features, and how rows are split into folds and validation rows."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mvfx.heads.data.align import align, clip_mean
from mvfx.heads.data.labels import Gold, clips_with, matched_clips
from mvfx.media.errors import MvfxError, MvfxWarning
from mvfx.stores.base import FeatureStore


@dataclass
class ClipData:
    """One clip's features on a time grid (the labels' grid in training, a regular one in prediction)."""

    clip_id: str
    times: np.ndarray  # [G, 2]
    features: dict[str, np.ndarray]  # extractor -> [G, D]
    target: np.ndarray | None = None  # [G]; None for a clip to predict
    gold: Gold | None = None


class RandomWeightsWarning(MvfxWarning):
    """Features made with --random-weights: useful to test plumbing, meaningless as results."""


def check_weights(store: FeatureStore, extractors: list[str]) -> list[str]:
    """Warn (and return the names) when some features come from random weights; refuse rows of the simulated GPU."""
    simulated = [e for e in extractors if store.attrs(e).get("weights") == "simulated"]
    if simulated:
        raise MvfxError(f"{', '.join(simulated)}: rows of the simulated GPU (--device sim) are placeholders, not features; "
                        "extract them again with --device cpu or cuda to train on them")
    random = [e for e in extractors if store.attrs(e).get("weights") == "random"]
    if random:
        warnings.warn(
            f"features {', '.join(random)} were extracted with --random-weights: scores say nothing about the task",
            RandomWeightsWarning, stacklevel=2,
        )
    return random


def build(store: FeatureStore, extractors: list[str], golds: dict[str, Gold]) -> list[ClipData]:
    """One ClipData per clip that has labels and every extractor; steps with missing features dropped."""
    table = store.clips()
    durations = dict(zip(table["clip_id"], table["duration_s"]))
    clips = []
    for clip_id in matched_clips(list(golds), clips_with(store, extractors), ", ".join(extractors)):
        gold = golds[clip_id]
        grid = gold.times.copy()
        duration = durations.get(clip_id) or np.inf  # 0 or missing: unknown (imported by an older mvfx), not empty
        grid[:, 1] = np.minimum(grid[:, 1], duration)
        features = {e: align(*store.read(e, clip_id), grid) for e in extractors}
        keep = np.all([np.isfinite(f).all(axis=1) for f in features.values()], axis=0) & np.isfinite(gold.value)
        if keep.any():
            clips.append(ClipData(clip_id, grid[keep], {e: f[keep] for e, f in features.items()}, gold.value[keep], gold))
    if len(clips) < 4:
        raise MvfxError(
            f"only {len(clips)} clips have both labels and {', '.join(extractors)} features; need at least 4 to cross-validate"
        )
    return clips


def fold_splits(n_clips: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds over clips (never over time steps of one clip), shuffled with ``seed``."""
    from sklearn.model_selection import KFold

    if n_clips < k:
        raise MvfxError(f"{n_clips} clips cannot make {k} folds; use --folds {max(2, n_clips)} or fewer")
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(n_clips)))


def class_folds(y: np.ndarray, splits: pd.Series | None, k: int, seed: int) -> list[tuple]:
    """(train, val, test) rows from the labels' split column, else (train, test) of stratified k-fold over ``y``."""
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


def with_validation(x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None]:
    """``fit``'s data with ``validation`` = (x, y) appended, so one set of arrays holds both: (x, y, the training
    rows, the validation rows); without ``validation``, (x, y, every row, None)."""
    rows = np.arange(len(y))
    if validation is None:
        return x, y, rows, None
    x = {k: np.concatenate([x[k], validation[0][k]]) for k in x}
    y = np.concatenate([y, validation[1]])
    return x, y, rows, np.arange(len(rows), len(y))


def inner_validation(train: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """About 15% of the training rows for early stopping: one row of each class at least, stratified where every
    class has two rows and the rest keeps one of each; at least one row is left to fit on.

    (2 folds of 12 clips in 6 classes leave 6 training rows: asking for 6/6 of them for validation made
    scikit-learn refuse ``test_size=1.0``.)"""
    from sklearn.model_selection import train_test_split

    present = np.bincount(y[train])
    present = present[present > 0]
    if len(train) < 2:
        raise MvfxError(f"{len(train)} training clip(s) in a fold: too few to fit and validate; use fewer --folds")
    stratified = present.min() >= 2 and len(train) >= 2 * len(present)
    n_val = min(max(round(0.15 * len(train)), len(present) if stratified else 1), len(train) - 1)
    fit_rows, val_rows = train_test_split(train, test_size=n_val, random_state=seed, stratify=y[train] if stratified else None)
    return np.sort(fit_rows), np.sort(val_rows)


def stack(clips: list[ClipData], extractors: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X [N, sum D], y [N] (None without targets), clip index of each row) of the concatenated features."""
    x = np.concatenate([np.concatenate([c.features[e] for e in extractors], axis=1) for c in clips])
    y = np.concatenate([c.target for c in clips]) if all(c.target is not None for c in clips) else None
    groups = np.concatenate([np.full(len(c.times), i) for i, c in enumerate(clips)])
    return x, y, groups


def pretrain_targets(clips: list[ClipData], pretrain: dict[str, dict[str, Gold]]) -> list[dict[str, np.ndarray]] | None:
    """Per clip, each modality's own gold (from ``--pretrain-labels``) on the clip's grid, where that modality rated it:
    ``LstmHead.fit``'s ``modality_targets``."""
    if not pretrain:
        return None
    return [{e: np.interp(c.times[:, 0], golds[c.clip_id].times[:, 0], golds[c.clip_id].value)
             for e, golds in pretrain.items() if c.clip_id in golds} for c in clips]


def clip_level_features(store: FeatureStore, extractor: str, clip_ids: list[str]) -> np.ndarray:
    """[N, D] one row per clip: each clip's rows averaged by ``align.clip_mean`` (duration-weighted, NaN-aware),
    the same function ``predict`` averages unseen clips with."""
    return np.stack([clip_mean(*store.read(extractor, c)) for c in clip_ids]).astype(np.float32)
