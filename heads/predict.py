"""Applying a saved head to the clips of a store: predictions.csv and one time-line PNG per clip.

- regressors (LASSO, LSTM) predict on a regular grid with the step of the
  labels they were trained on (``training_["grid_step_s"]``): the curve of
  valence or arousal over the clip;
- classifiers predict from each clip's mean features, as they were trained,
  and also from windows of ``window_s`` seconds (hop half a window): the
  class probabilities on the video's time line;
- correspondence models give P(match) of each clip's own music and video,
  per clip and per window, and the clip's three best-fitting music clips;
- end-to-end MVF networks predict once per clip from its cached inputs (the frames spread over the whole
  clip), so they draw no time line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mvfx.heads.align import align, clip_mean
from mvfx.heads.dataset import ClipData
from mvfx.heads.estimator import Head, check_features
from mvfx.heads.plots import timeline_plot
from mvfx.media.errors import MvfxError
from mvfx.media.names import printable
from mvfx.stores.base import FeatureStore

WINDOW_S = 4.0
NEIGHBOURS = 3


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


def predict_store(head: Head, store: FeatureStore, out: Path, clip_ids: list[str] | None = None,
                  window_s: float = WINDOW_S) -> pd.DataFrame:
    """Predict every clip (or ``clip_ids``) of ``store`` that has the head's features; write the CSV and PNGs."""
    check_features(head.provenance_, store, store.location)
    have = set.intersection(*(set(store.clip_ids(e)) for e in head.provenance_))
    ids = sorted(have if clip_ids is None else have & set(clip_ids))
    if not ids:
        raise MvfxError(f"{store.location}: no clip has {', '.join(head.provenance_)} features to predict from")
    records = store.clips()
    durations = dict(zip(records["clip_id"], records["duration_s"]))
    out.mkdir(parents=True, exist_ok=True)
    task = head.training_.get("task")
    if task == "clip classification":  # end-to-end networks: one prediction per clip from its cached inputs
        table = _clip_classification(head, store, ids)
        table.to_csv(out / "predictions.csv", index=False)
        return table
    (out / "timelines").mkdir(exist_ok=True)
    blocks = {c: {e: store.read(e, c) for e in head.provenance_} for c in ids}
    length = {c: float(durations.get(c) or max(t[-1, 1] for _, t in blocks[c].values())) for c in ids}
    if task == "regression":
        table = _regression(head, blocks, length, out)
    elif task == "classification":
        table = _classification(head, blocks, length, out, window_s)
    elif task == "correspondence":
        table = _correspondence(head, blocks, length, out, window_s)
    else:
        raise MvfxError(f"{head.kind} model without a known task ({task!r}); retrain it with this mvfx")
    table.to_csv(out / "predictions.csv", index=False)
    return table


def _png(out: Path, clip_id: str) -> Path:
    return out / "timelines" / f"{printable(clip_id).replace('/', '__')}.png"


def _regression(head: Head, blocks: dict, length: dict, out: Path) -> pd.DataFrame:
    target, step = head.training_["target"], head.training_["grid_step_s"]
    rows = []
    for clip_id, by_extractor in blocks.items():
        steps = grid(length[clip_id], step)
        features = {e: align(v, t, steps) for e, (v, t) in by_extractor.items()}
        keep = np.all([np.isfinite(f).all(axis=1) for f in features.values()], axis=0)
        if not keep.any():
            continue
        clip = ClipData(clip_id, steps[keep], {e: f[keep] for e, f in features.items()})
        curve = head.predict([clip])[0]
        rows += [{"clip_id": clip_id, "start_s": a, "end_s": b, f"predicted_{target}": float(p)} for (a, b), p in zip(clip.times, curve)]
        timeline_plot(_png(out, clip_id), clip.times, {f"predicted {target}": curve}, f"{clip_id}: {target} ({head.kind})", target)
    return pd.DataFrame(rows)


def _pooled(by_extractor: dict, spans: np.ndarray) -> dict[str, np.ndarray]:
    """Each extractor's rows averaged over each span (overlap-weighted; NaN left out)."""
    return {e: align(v, t, spans) for e, (v, t) in by_extractor.items()}


def _classification(head: Head, blocks: dict, length: dict, out: Path, window_s: float) -> pd.DataFrame:
    classes, rows = head.classes_, []
    for clip_id, by_extractor in blocks.items():
        whole = head.predict_proba({e: clip_mean(v, t)[None] for e, (v, t) in by_extractor.items()})[0]
        spans = windows(length[clip_id], window_s)
        over_time = head.predict_proba(_pooled(by_extractor, spans))
        rows.append({"clip_id": clip_id, "predicted": classes[int(whole.argmax())], **{f"p_{c}": float(p) for c, p in zip(classes, whole)}})
        timeline_plot(_png(out, clip_id), spans, {c: over_time[:, k] for k, c in enumerate(classes)},
                      f"{clip_id}: {classes[int(whole.argmax())]} ({window_s:g} s windows)", "probability")
    return pd.DataFrame(rows)


def _clip_classification(head: Head, store: FeatureStore, ids: list[str]) -> pd.DataFrame:
    from mvfx.heads.mvf import load_inputs

    proba = head.predict_proba(load_inputs(store, ids, list(head.architectures), head.frame_size, head.music_frames))
    return pd.DataFrame([{"clip_id": c, "predicted": head.classes_[int(p.argmax())], **{f"p_{k}": float(v) for k, v in zip(head.classes_, p)}}
                         for c, p in zip(ids, proba)])


def _correspondence(head: Head, blocks: dict, length: dict, out: Path, window_s: float) -> pd.DataFrame:
    sides = {"video": head.video_features, "music": head.music_features}
    ids = list(blocks)
    whole = {side: np.stack([clip_mean(*blocks[c][e]) for c in ids]) for side, e in sides.items()}
    own = head.predict_proba(whole)[:, 1]
    zv, zm = head.embed_side("video", whole["video"]), head.embed_side("music", whole["music"])
    with torch.no_grad():
        scores = head.model_.pair_scores(torch.as_tensor(zv), torch.as_tensor(zm)).numpy()
    rows = []
    for k, clip_id in enumerate(ids):
        best = [ids[j] for j in np.argsort(-scores[k], kind="stable")[:NEIGHBOURS]]
        rows.append({"clip_id": clip_id, "p_match_own_music": float(own[k]), "best_music": ";".join(best)})
        spans = windows(length[clip_id], window_s)
        per_window = head.predict_proba({side: align(*blocks[clip_id][e], spans) for side, e in sides.items()})[:, 1]
        timeline_plot(_png(out, clip_id), spans, {"P(match) of its own music": per_window},
                      f"{clip_id}: does the music fit the video?", "P(match)")
    return pd.DataFrame(rows)
