"""Applying a saved head to the clips of a store: predictions.csv and time-line PNGs, streamed clip by clip.

The head decides what a clip's prediction is (``Head.predict_clips``; see each head and ``application``):
regressors (LASSO, LSTM) a valence or arousal curve on their labels' grid, classifiers the class
probabilities of the clip (and over windows of ``window_s`` on its time line), correspondence models
P(match) of the clip's own music and video and its best-fitting music clips, MVF networks one row per clip
and no time line. This module only streams the clips through the head, appends each clip's rows to
predictions.csv as they come and draws time lines, so memory does not grow with the store (100,000 clips).

Time lines: one PNG per clip is drawn for the first ``max_timelines`` clips in clip-id order (default
``MAX_TIMELINES``, 100: every clip of a store of up to 100 clips, as before); ``None`` draws every clip.
Drawing a PNG takes about ten times as long as predicting a clip (about 60 ms against 6 ms on one CPU
core), so drawing one for each of 100,000 clips would add well over an hour.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mvfx.heads.application import WINDOW_S, ClipReader
from mvfx.heads.data.labels import clips_with
from mvfx.heads.estimator import Head, check_features
from mvfx.media.errors import MvfxError
from mvfx.media.names import printable
from mvfx.stores.base import FeatureStore

MAX_TIMELINES = 100
FLUSH_ROWS = 4096  # rows of predictions.csv held before they are appended


@dataclass(frozen=True)
class Predicted:
    """What ``predict_store`` wrote: the CSV, how many clips have rows in it, how many time lines were drawn."""

    csv: Path
    clips: int
    timelines: int

    def table(self) -> pd.DataFrame:
        """predictions.csv read back (clip ids and class names as strings)."""
        return pd.read_csv(self.csv, dtype={"clip_id": str, "predicted": str, "best_music": str}, keep_default_na=False)


def predict_store(head: Head, store: FeatureStore, out: Path, clip_ids: list[str] | None = None,
                  window_s: float = WINDOW_S, max_timelines: int | None = MAX_TIMELINES) -> Predicted:
    """Predict every clip (or ``clip_ids``) of ``store`` that has the head's features; write predictions.csv and
    timelines/<clip>.png for the first ``max_timelines`` clips (None: all)."""
    check_features(head.provenance_, store, store.location)
    have = clips_with(store, head.provenance_)
    ids = sorted(have if clip_ids is None else have & set(clip_ids))
    if not ids:
        raise MvfxError(f"{store.location}: no clip has {', '.join(head.provenance_)} features to predict from")
    out.mkdir(parents=True, exist_ok=True)
    clips = drawn = 0
    with _CsvRows(out / "predictions.csv") as csv:
        for prediction in head.predict_clips(ClipReader(store, ids, list(head.provenance_)), window_s):
            csv.write(prediction.rows)
            clips += bool(prediction.rows)
            if max_timelines is None or drawn < max_timelines:
                drawn += head.draw_timeline(prediction, _png(out, prediction.clip_id))
    return Predicted(out / "predictions.csv", clips, drawn)


def _png(out: Path, clip_id: str) -> Path:
    return out / "timelines" / f"{printable(clip_id).replace('/', '__')}.png"


class _CsvRows:
    """predictions.csv appended ``FLUSH_ROWS`` rows at a time, with the text pandas writes for the whole table
    (every clip's rows have the same columns, and pandas formats each value on its own)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w", newline="")
        self.rows: list[dict[str, Any]] = []
        self.header = True

    def __enter__(self) -> _CsvRows:
        return self

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.rows += rows
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.header:  # no row at all: what pandas writes for an empty table
            pd.DataFrame(self.rows).to_csv(self.file, header=self.header, index=False)
            self.rows, self.header = [], False

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.file.close()
