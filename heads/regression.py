"""Cross-validated valence/arousal regression: folds over clips, per-clip scores, run folder.

Every regressor is a head (LASSO, LSTM variants; see estimator.py): cloned and
fitted per fold, it predicts the held-out clips; this module does the rest the
same way for all:
seeded k-fold over clips, RMSE / Pearson r / CCC per test clip, mean and
standard deviation over folds, the inter-rater ceiling, and the files of a
run folder (config.json, metrics.json, predictions.csv, plots).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.heads.dataset import ClipData, fold_splits
from mvfx.heads.estimator import Head, cross_validate
from mvfx.heads.metrics import mean_std, regression_scores

METRICS = ("ccc", "pearson", "rmse")


@dataclass
class CvResult:
    folds: list[dict] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    fold_of: dict[str, int] = field(default_factory=dict)


def cross_validate_clips(head: Head, clips: list[ClipData], k: int, seed: int, modality_targets: list | None = None,
                         on_fold=None) -> tuple[CvResult, list[Head]]:
    """Fit a clone of ``head`` on k-1 folds of clips, predict the held-out clips, k times; also the fold models.
    ``modality_targets``: per clip, PAIR's per-modality pre-training ratings (``LstmHead.fit``), or None."""
    result, models = CvResult(), []
    splits = fold_splits(len(clips), k, seed)
    for fold, model, test_idx in cross_validate(head, clips, None, splits, {"modality_targets": modality_targets}):
        test = [clips[i] for i in test_idx]
        predictions = dict(zip([c.clip_id for c in test], model.predict(test)))
        row = {"fold": fold, "test_clips": [c.clip_id for c in test]}
        if all(len(c.target) > 1 for c in test):  # time series: the mean of each test clip's scores
            per_clip = {c.clip_id: regression_scores(c.target, predictions[c.clip_id]) for c in test}
            row |= {m: float(np.nanmean([s[m] for s in per_clip.values()])) for m in METRICS} | {"per_clip": per_clip}
        else:  # one value per clip: scores over the fold's test clips (a clip alone has no r or CCC)
            row |= regression_scores(np.concatenate([c.target for c in test]), np.concatenate([predictions[c.clip_id] for c in test]))
        result.folds.append(row)
        result.predictions.update(predictions)
        result.fold_of.update({c.clip_id: fold for c in test})
        models.append(model)
        if on_fold:
            on_fold(result.folds[-1])
    return result, models


def summarise(result: CvResult, clips: list[ClipData]) -> dict:
    pooled_y = np.concatenate([c.target for c in clips])
    pooled_p = np.concatenate([result.predictions[c.clip_id] for c in clips])
    ceiling = [c.gold.agreement for c in clips]
    return {
        "grain": "per clip" if all(len(c.target) > 1 for c in clips) else "per fold (one value per clip)",
        "aggregate": {m: mean_std([f[m] for f in result.folds]) for m in METRICS},
        "pooled": regression_scores(pooled_y, pooled_p),
        "inter_rater_ccc": mean_std(ceiling),
        "n_clips": len(clips),
        "n_steps": int(len(pooled_y)),
        "folds": result.folds,
    }


def write_run(out: Path, config: dict, metrics: dict, result: CvResult, clips: list[ClipData]) -> None:
    """config.json, metrics.json, predictions.csv and the trajectory + fold plots."""
    from mvfx.heads.plots import fold_scores_plot, trajectories_plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    rows = [
        {"clip_id": c.clip_id, "fold": result.fold_of[c.clip_id], "start_s": t0, "end_s": t1, "gold": y, "predicted": p}
        for c in clips
        for (t0, t1), y, p in zip(c.times, c.target, result.predictions[c.clip_id])
    ]
    pd.DataFrame(rows).to_csv(out / "predictions.csv", index=False)
    trajectories_plot(out / "trajectories.png", clips[:4], result.predictions, config.get("target", ""))
    fold_scores_plot(out / "folds.png", metrics, config.get("target", ""))
