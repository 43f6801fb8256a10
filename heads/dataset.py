"""Assemble training data from a store and labels: features aligned to each clip's label grid."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mvfx.heads.align import align, clip_mean
from mvfx.heads.labels import Gold
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


class UnmatchedLabelsWarning(MvfxWarning):
    """Label rows whose clip has none of the requested features: left out of training, and said so."""


def matched_clips(labelled: list[str], available: set[str], what: str) -> list[str]:
    """The labelled clips that have features, sorted; warns with the counts and the first unmatched ids."""
    labelled = sorted(set(labelled))
    matched = [c for c in labelled if c in available]
    unmatched = [c for c in labelled if c not in available]
    if unmatched:
        warnings.warn(UnmatchedLabelsWarning(
            f"labels: {len(labelled)} clips, {len(matched)} with {what} features; left out {len(unmatched)}: "
            f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}"), stacklevel=2)
    return matched


def check_weights(store: FeatureStore, extractors: list[str]) -> list[str]:
    """Warn (and return the names) when some features come from random weights."""
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
    available = set.intersection(*(set(store.clip_ids(e)) for e in extractors))
    clips = []
    for clip_id in matched_clips(list(golds), available, ", ".join(extractors)):
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


def stack(clips: list[ClipData], extractors: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X [N, sum D], y [N] (None without targets), clip index of each row) of the concatenated features."""
    x = np.concatenate([np.concatenate([c.features[e] for e in extractors], axis=1) for c in clips])
    y = np.concatenate([c.target for c in clips]) if all(c.target is not None for c in clips) else None
    groups = np.concatenate([np.full(len(c.times), i) for i, c in enumerate(clips)])
    return x, y, groups


def pooled(store: FeatureStore, extractor: str, clip_ids: list[str]) -> np.ndarray:
    """[N, D] clip-level features: each clip's rows pooled by ``align.clip_mean`` (duration-weighted, NaN-aware),
    the same function ``predict`` pools unseen clips with."""
    return np.stack([clip_mean(*store.read(extractor, c)) for c in clip_ids]).astype(np.float32)


def scaling(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training rows (NaN ignored): fitted on training data only."""
    return np.nanmean(train, axis=0), np.nanstd(train, axis=0) + 1e-6


def scale(x: np.ndarray, stats) -> np.ndarray:
    """Standardise with ``scaling``'s statistics; NaN (e.g. no face) becomes the training mean, 0."""
    mean, std = (np.asarray(a) for a in stats)
    return np.nan_to_num((x - mean) / std).astype(np.float32)
