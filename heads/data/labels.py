"""Labels: per-annotator time series reduced to a gold standard (EWE), clip-level values, or emotion classes.

Evaluator Weighted Estimator (Grimm & Kroschel 2005): annotators whose
ratings never move are dropped; each remaining annotator is weighted by the
Pearson correlation of their ratings with the unweighted mean, negative
weights set to zero; the gold standard is the weighted mean. If every weight
is zero the unweighted mean is used. The human ceiling reported next to
model scores is each annotator's CCC against the leave-one-out EWE of the
others, averaged over annotators and clips.

Class labels (``clip_id,label[,split]``) are read by ``read_class_labels``; ``class_labels`` keeps the clips
that have features and codes their classes, the same way for every classifier's run.

Every label file holds one row per key (a clip; a clip, annotator and time for rating series): a row that
repeats an earlier one of its key with the same label is dropped, and one warning line says which; two rows of
one key with different labels (or, for classes, different splits) are refused in one line naming the clip and
both rows, since no choice between them is safe and keeping both would put the clip on both sides of a fold.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.heads.metrics import ccc, pearson
from mvfx.media.errors import MvfxError, MvfxWarning
from mvfx.stores.base import FeatureStore


class UnmatchedLabelsWarning(MvfxWarning):
    """Label rows whose clip has none of the requested features: left out of training, and said so."""


class RepeatedLabelsWarning(MvfxWarning):
    """Label rows identical to an earlier row of their clip: dropped, and said so."""


def one_row_per_key(table: pd.DataFrame, keys: list[str], labels: list[str], path: str | Path) -> pd.DataFrame:
    """``table`` (as read, its index the row number) with one row per ``keys``: a repeat with the same ``labels`` is
    dropped (one warning line names them), two rows of one key with different ``labels`` are refused in one line
    naming the clip and both rows by their line in the file."""
    repeated = table.duplicated(keys, keep=False)
    if not repeated.any():
        return table
    for _, rows in table[repeated].groupby(keys, sort=False):
        distinct = rows.drop_duplicates(labels)
        if len(distinct) > 1:
            first, second = (_line(table, i) for i in distinct.index[:2])
            raise MvfxError(f"{path}: clip {rows['clip_id'].iat[0]} has conflicting labels: {first} and {second}; keep one")
    dropped = table.index[table.duplicated(keys)]
    named = ", ".join(f"line {i + 2} ({table.at[i, 'clip_id']})" for i in dropped[:5])
    warnings.warn(RepeatedLabelsWarning(
        f"{path}: dropped {len(dropped)} row(s) repeating an earlier row of their clip: {named}{' ...' if len(dropped) > 5 else ''}"),
        stacklevel=3)
    return table.drop(dropped)


def _line(table: pd.DataFrame, row: int) -> str:
    """'line 5 (clip_007,sad,train)': a row of a label file as it reads there (the header is line 1)."""
    return f"line {row + 2} ({','.join(str(v) for v in table.loc[row])})"


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


def clips_with(store: FeatureStore, extractors: Iterable[str]) -> set[str]:
    """The clips of ``store`` that have every one of ``extractors``' features."""
    return set.intersection(*(set(store.clip_ids(e)) for e in extractors))


@dataclass
class Gold:
    """One clip's target: a gold series on a time grid (or one clip-level value)."""

    clip_id: str
    times: np.ndarray  # [G, 2] start/end seconds of each step; clip-level: [[0, duration]]
    value: np.ndarray  # [G]
    ratings: np.ndarray  # [A, G] the annotators' ratings (empty for clip-level labels)
    agreement: float  # mean CCC of annotators vs leave-one-out EWE (NaN if < 2 annotators)


def ewe(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gold [T], weights [A]) of an [A, T] rating matrix."""
    ratings = np.asarray(ratings, float)
    moving = ratings.std(axis=1) > 0
    weights = np.zeros(len(ratings))
    if not moving.any():
        return ratings.mean(axis=0), weights
    mean = ratings[moving].mean(axis=0)
    weights[moving] = [max(0.0, np.nan_to_num(pearson(r, mean))) for r in ratings[moving]]
    if weights.sum() == 0:
        return mean, weights
    return (weights[:, None] * ratings).sum(axis=0) / weights.sum(), weights


def inter_rater_agreement(ratings: np.ndarray) -> float:
    """Mean CCC of each moving annotator against the EWE of the others."""
    ratings = np.asarray(ratings, float)
    moving = np.flatnonzero(ratings.std(axis=1) > 0)
    if len(moving) < 2:
        return float("nan")
    scores = [ccc(ratings[k], ewe(np.delete(ratings, k, axis=0))[0]) for k in moving]
    return float(np.nanmean(scores))


def read_labels(path: str | Path, target: str, where: dict[str, str] | None = None) -> dict[str, Gold]:
    """Gold standard per clip from a CSV of annotator time series or of clip-level values."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise MvfxError(f"{path}: cannot read labels ({exc})") from None
    missing = {"clip_id", target} - set(table.columns)
    if missing:
        raise MvfxError(f"{path}: missing column(s) {', '.join(sorted(missing))}; columns: {', '.join(map(str, table.columns))}")
    if not pd.api.types.is_numeric_dtype(table[target]):
        raise MvfxError(f"{path}: column {target!r} is not numeric; a regression target must be")
    for column, value in (where or {}).items():
        if column not in table.columns:
            raise MvfxError(f"{path}: no column {column!r} to select on")
        table = table[table[column].astype(str) == value]
    table = table.assign(clip_id=table["clip_id"].astype(str))
    keys = ["clip_id", *(c for c in ("annotator", "time_s") if c in table.columns)]
    table = one_row_per_key(table, keys, [target], path)
    if {"annotator", "time_s"} <= set(table.columns):
        return {clip: _series_gold(clip, rows, target) for clip, rows in table.groupby("clip_id", sort=True)}
    return {
        clip: Gold(clip, np.array([[0.0, np.inf]]), np.array([float(v)]), np.zeros((0, 1)), float("nan"))
        for clip, v in table.groupby("clip_id", sort=True)[target].mean().items()
    }


def _series_gold(clip_id: str, rows: pd.DataFrame, target: str) -> Gold:
    matrix = rows.pivot_table(index="time_s", columns="annotator", values=target, aggfunc="mean").dropna(axis=0)
    starts = matrix.index.to_numpy(float)
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 0.5
    ratings = matrix.to_numpy(float).T
    gold, _ = ewe(ratings)
    return Gold(clip_id, np.stack([starts, starts + step], axis=1), gold, ratings, inter_rater_agreement(ratings))


def read_class_labels(path: str | Path) -> pd.DataFrame:
    """labels.csv with clip_id,label[,split]: one row per clip (``one_row_per_key``)."""
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError) as exc:
        raise MvfxError(f"{path}: cannot read labels ({exc})") from None
    if not {"clip_id", "label"} <= set(table.columns):
        raise MvfxError(f"{path}: labels need columns clip_id,label (and optionally split)")
    return one_row_per_key(table, ["clip_id"], [c for c in ("label", "split") if c in table.columns], path).reset_index(drop=True)


@dataclass(frozen=True)
class ClassLabels:
    """The class labels of the clips that have features, in clip-id order."""

    table: pd.DataFrame  # clip_id, label[, split], one row per clip
    classes: list[str]  # sorted class names

    @property
    def clip_ids(self) -> list[str]:
        return self.table["clip_id"].tolist()

    @property
    def names(self) -> np.ndarray:
        """[N] each clip's class name (what the heads fit on)."""
        return self.table["label"].to_numpy()

    @property
    def codes(self) -> np.ndarray:
        """[N] each clip's class as an index into ``classes`` (what the scores take)."""
        return np.array([self.classes.index(label) for label in self.names])


def class_labels(path: str | Path, store: FeatureStore, extractors: list[str]) -> ClassLabels:
    """``path``'s class labels of the clips that have every one of ``extractors``' features in ``store``; warns
    naming the labelled clips left out (``matched_clips``)."""
    table = read_class_labels(path)
    keep = matched_clips(table["clip_id"].tolist(), clips_with(store, extractors), ", ".join(extractors))
    table = table[table["clip_id"].isin(keep)].sort_values("clip_id").reset_index(drop=True)
    return ClassLabels(table, sorted(table["label"].unique()))
