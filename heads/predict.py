"""Applying a saved head to the clips of a store: predictions.csv, the clips it could not predict, and time-line
PNGs, streamed clip by clip.

The head decides what a clip's prediction is (``Head.predict_clips``; see each head and ``application``):
regressors (LASSO, LSTM) a valence or arousal curve on their labels' grid, classifiers the class
probabilities of the clip (and over windows of ``window_s`` on its time line), correspondence models
P(match) of the clip's own music and video and its best-fitting music clips, MVF networks one row per clip
and no time line. This module only streams the clips through the head, appends each clip's rows to
predictions.csv as they come and draws time lines, so memory does not grow with the store (100,000 clips).

predictions.csv has the head's own columns (``Head.prediction_columns``), written before the first clip by a
``csv.DictWriter`` that refuses a row with any other column: a header taken from the first rows let later rows
with other columns shift silently. Every clip asked for (every clip of the store, or ``clip_ids``) gets rows
there or a row in not_predicted.csv saying why: the feature sets it lacks, with the failure the store recorded
where there is one, or the head's reason (a regressor with no time step where every feature set has a value).

Time lines: one PNG per clip is drawn for the first ``max_timelines`` clips in clip-id order (default
``MAX_TIMELINES``, 100: every clip of a store of up to 100 clips, as before); ``None`` draws every clip.
Drawing a PNG takes about ten times as long as predicting a clip (about 60 ms against 6 ms on one CPU
core), so drawing one for each of 100,000 clips would add well over an hour.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader
from mvfx.heads.estimator import Head
from mvfx.heads.provenance import check_features
from mvfx.media.errors import MvfxError
from mvfx.media.names import printable
from mvfx.stores.base import FeatureStore

MAX_TIMELINES = 100
NOT_PREDICTED = "not_predicted.csv"


@dataclass(frozen=True)
class Predicted:
    """What ``predict_store`` wrote: the CSV, how many clips have rows in it, how many time lines were drawn, and
    the clips it has no rows for, with why (also in ``not_predicted.csv`` beside it, when there are any)."""

    csv: Path
    clips: int
    timelines: int
    not_predicted: dict[str, str]

    def table(self) -> pd.DataFrame:
        """predictions.csv read back (clip ids and class names as strings)."""
        return pd.read_csv(self.csv, dtype={"clip_id": str, "predicted": str, "best_music": str}, keep_default_na=False)


def predict_store(head: Head, store: FeatureStore, out: Path, clip_ids: list[str] | None = None,
                  window_s: float = WINDOW_S, max_timelines: int | None = MAX_TIMELINES) -> Predicted:
    """Predict every clip of ``store`` (or ``clip_ids``); write predictions.csv, not_predicted.csv for the clips that
    got no rows, and timelines/<clip>.png for the first ``max_timelines`` predicted clips (None: all)."""
    check_features(head.provenance_, store, store.location)
    extractors = list(head.provenance_)
    have = {e: set(store.clip_ids(e)) for e in extractors}
    wanted = sorted(set(store.clips()["clip_id"]).union(*have.values()) if clip_ids is None else set(clip_ids))
    ids = [c for c in wanted if all(c in clips for clips in have.values())]
    if not ids:
        raise MvfxError(f"{store.location}: no clip has {', '.join(extractors)} features to predict from")
    not_predicted = _lacking(store, [c for c in wanted if c not in ids], have)
    out.mkdir(parents=True, exist_ok=True)
    clips = drawn = 0
    with (out / "predictions.csv").open("w", newline="") as file:
        rows = csv.DictWriter(file, fieldnames=head.prediction_columns(), extrasaction="raise")
        rows.writeheader()
        for prediction in head.predict_clips(ClipReader(store, ids, extractors), window_s):
            if not prediction.rows:
                not_predicted[prediction.clip_id] = prediction.reason or "the model gave no prediction"
                continue
            rows.writerows({k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()} for row in prediction.rows)
            clips += 1
            if max_timelines is None or drawn < max_timelines:
                drawn += draw_timeline(prediction, _png(out, prediction.clip_id))
    not_predicted = dict(sorted(not_predicted.items()))
    if not_predicted:
        pd.DataFrame({"clip_id": list(not_predicted), "reason": list(not_predicted.values())}).to_csv(out / NOT_PREDICTED, index=False)
    return Predicted(out / "predictions.csv", clips, drawn, not_predicted)


def _lacking(store: FeatureStore, clip_ids: list[str], have: dict[str, set[str]]) -> dict[str, str]:
    """Why each of ``clip_ids`` cannot be predicted: the feature sets it lacks and, where the store recorded one, the
    failure that left them out (the latest for those sets or for the whole clip)."""
    failures = store.failures()
    why = {}
    for clip in clip_ids:
        lacking = [e for e, clips in have.items() if clip not in clips]
        failed = failures[(failures["clip_id"] == clip) & failures["extractor"].isin([*lacking, "*"])]
        cause = f"{failed['stage'].iat[-1]} failed: {failed['message'].iat[-1]}" if len(failed) else "none in the store"
        why[clip] = f"no {', '.join(lacking)} features ({cause})"
    return why


def draw_timeline(prediction: ClipPrediction, path: Path) -> bool:
    """Draw the prediction's time line (computed now, ``ClipPrediction.timeline``) as a PNG at ``path``; False
    (nothing drawn) when the head gives none."""
    if prediction.timeline is None:
        return False
    from mvfx.heads.plots import timeline_plot  # matplotlib, loaded only when a time line is drawn

    line = prediction.timeline()
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_plot(path, line.times, line.series, line.title, line.ylabel)
    return True


def _png(out: Path, clip_id: str) -> Path:
    return out / "timelines" / f"{printable(clip_id).replace('/', '__')}.png"
