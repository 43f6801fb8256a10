"""What a head is given and gives back when it predicts a store's clips (``Head.predict_clips``, ``mvfx predict``).

The driver (``predict.predict_store``) hands a head a ``ClipReader``, which reads one clip at a time, and
writes each ``ClipPrediction`` as it comes: rows of predictions.csv and, computed only for the clips whose
time line is drawn, a ``Timeline``. Each head decides what its prediction is; the pieces several heads
share live here: the regular grids, the regressors' curve (``curve_prediction``) and a classifier's row.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import numpy as np

from mvfx.heads.data.align import align
from mvfx.heads.data.dataset import ClipData
from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

WINDOW_S = 4.0  # seconds per window of a classifier's time line (hop: half a window)
T = TypeVar("T")


@dataclass(frozen=True)
class StoreClip:
    """One clip as the store holds it: extractor -> (values [T, D], times [T, 2]), and its length in seconds."""

    clip_id: str
    blocks: dict[str, tuple[np.ndarray, np.ndarray]]
    length: float


@dataclass(frozen=True)
class Timeline:
    """A clip's predictions over time: one series per line of the plot, on ``times`` [S, 2]."""

    times: np.ndarray
    series: dict[str, np.ndarray]
    title: str
    ylabel: str


@dataclass(frozen=True)
class ClipPrediction:
    """One clip's rows of predictions.csv (the head's ``prediction_columns``) and, where the head draws one, how to
    compute its time line (a function, so clips whose time line is not drawn do not pay for it); a clip without
    rows says why (``reason``: not_predicted.csv lists it)."""

    clip_id: str
    rows: list[dict[str, Any]]
    timeline: Callable[[], Timeline] | None = None
    reason: str = ""


class ClipReader:
    """The clips to predict, read from ``store`` one at a time (each time it is iterated), with their lengths:
    the clips table's duration, else the end of the last feature row."""

    def __init__(self, store: FeatureStore, clip_ids: list[str], extractors: list[str]) -> None:
        self.store, self.clip_ids, self.extractors = store, clip_ids, extractors
        records = store.clips()
        self._durations = dict(zip(records["clip_id"], records["duration_s"]))

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __iter__(self) -> Iterator[StoreClip]:
        """The clips in order, each extractor's rows read in batches of neighbours (``FeatureStore.read_many``)."""
        streams = [self.store.read_many(e, self.clip_ids) for e in self.extractors]
        for clip_id, *blocks in zip(self.clip_ids, *streams):
            yield self._clip(clip_id, dict(zip(self.extractors, blocks)))

    def read(self, clip_id: str) -> StoreClip:
        return self._clip(clip_id, {e: self.store.read(e, clip_id) for e in self.extractors})

    def _clip(self, clip_id: str, blocks: dict[str, tuple[np.ndarray, np.ndarray]]) -> StoreClip:
        length = self._durations.get(clip_id) or max(t[-1, 1] for _, t in blocks.values())
        return StoreClip(clip_id, blocks, float(length))


def batched(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Lists of ``n`` items (the last one shorter)."""
    items = iter(items)
    while part := list(islice(items, n)):
        yield part


def grid(duration: float, step: float) -> np.ndarray:
    """[G, 2] back-to-back steps over [0, duration); the last one is cut at the end."""
    starts = np.arange(0.0, max(duration, step) - 1e-9, step)
    return np.stack([starts, np.minimum(starts + step, max(duration, step))], axis=1)


def windows(duration: float, window_s: float) -> np.ndarray:
    """[W, 2] windows of ``window_s`` every half window (one over the whole clip when it is shorter)."""
    if duration <= window_s:
        return np.array([[0.0, duration]])
    starts = np.arange(0.0, duration - window_s + 1e-9, window_s / 2)
    return np.stack([starts, starts + window_s], axis=1)


def span_means(clip: StoreClip, spans: np.ndarray) -> dict[str, np.ndarray]:
    """Each extractor's rows averaged over each span [S, 2] (overlap-weighted; NaN left out)."""
    return {e: align(v, t, spans) for e, (v, t) in clip.blocks.items()}


def class_columns(classes: list[str]) -> list[str]:
    """A classifier's columns of predictions.csv: the clip, its most probable class, every class's probability."""
    return ["clip_id", "predicted", *(f"p_{c}" for c in classes)]


def class_row(clip_id: str, classes: list[str], proba: np.ndarray) -> dict[str, Any]:
    """A classifier's row (``class_columns``): the most probable class and every class's probability."""
    return {"clip_id": clip_id, "predicted": classes[int(proba.argmax())], **{f"p_{c}": float(p) for c, p in zip(classes, proba)}}


def training_facts(head: Any, *keys: str) -> list[Any]:
    """What ``head.training_`` recorded under ``keys``; one line when a model saved without them cannot predict."""
    facts = getattr(head, "training_", {})
    missing = [k for k in keys if k not in facts]
    if missing:
        raise MvfxError(f"{head.kind} model without {', '.join(missing)} in its training facts; retrain it with this mvfx")
    return [facts[k] for k in keys]


def curve_columns(head: Any) -> list[str]:
    """A regressor's columns of predictions.csv: the clip, each step's start and end, the predicted target."""
    return ["clip_id", "start_s", "end_s", f"predicted_{training_facts(head, 'target')[0]}"]


def curve_prediction(head: Any, clip: StoreClip) -> ClipPrediction:
    """A regressor's curve over the clip (``curve_columns``): one row per step of a grid with the training labels'
    step (``training_["grid_step_s"]``); steps where some features are missing are left out (no row at all, and
    the reason, when every step is)."""
    target, step = training_facts(head, "target", "grid_step_s")
    steps = grid(clip.length, step)
    features = span_means(clip, steps)
    keep = np.all([np.isfinite(f).all(axis=1) for f in features.values()], axis=0)
    if not keep.any():
        return ClipPrediction(clip.clip_id, [], reason=f"no {step:g} s step where every one of {', '.join(features)} has a value")
    data = ClipData(clip.clip_id, steps[keep], {e: f[keep] for e, f in features.items()})
    curve = head.predict([data])[0]
    rows = [{"clip_id": clip.clip_id, "start_s": a, "end_s": b, f"predicted_{target}": float(p)} for (a, b), p in zip(data.times, curve)]
    return ClipPrediction(clip.clip_id, rows, lambda: Timeline(data.times, {f"predicted {target}": curve},
                                                               f"{clip.clip_id}: {target} ({head.kind})", target))
