"""`mvfx train lasso` and `mvfx train lstm`: cross-validated valence/arousal regression, from store + labels to a
run folder with a saved model.

Every regressor is a head (LASSO, LSTM variants; see ``heads.models``): cloned and fitted per fold, it
predicts the held-out clips; this module does the rest the same way for all: seeded k-fold over clips,
RMSE / Pearson r / CCC per test clip, mean and standard deviation over folds, the inter-rater ceiling, and
the run folder (``folder.RunFolder``: config.json, predictions.csv, trajectory and fold plots, LASSO's
coefficients, model/, metrics.json).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mvfx.heads.data.dataset import ClipData, build, check_weights, fold_splits, pretrain_targets
from mvfx.heads.data.labels import read_labels
from mvfx.heads.estimator import Head
from mvfx.heads.metrics import mean_std, regression_scores
from mvfx.heads.runs.cross_validation import cross_validate
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store
from mvfx.stores.base import FeatureStore

METRICS = ("ccc", "pearson", "rmse")
TOP_COEFFICIENTS = 25


@with_training_threads
def train_regression(
    store_path: str, labels: str, head: Head, target: str, out: str, folds: int = 5, seed: int = 0,
    where: dict[str, str] | None = None, pretrain_labels: dict[str, str] | None = None, on_fold=None,
) -> dict:
    """Cross-validate ``head`` (a LassoHead or LstmHead), fit it on every clip, write the run folder and model/."""
    started = time.perf_counter()
    store = open_store(store_path)
    extractors = list(head.features)
    random = check_weights(store, extractors)
    clips = build(store, extractors, read_labels(labels, target, where))
    pretrain = pretrain_targets(clips, {e: read_labels(p, target, where) for e, p in (pretrain_labels or {}).items()})
    run = RunFolder(out, run_config(head, store, extractors, folds, seed, labels=str(labels), target=target, where=where or {},
                                    random_weight_features=random, pretrain_labels=pretrain_labels or {}), started)
    result, fold_models = cross_validate_clips(head, clips, folds, seed, pretrain, on_fold)
    step = float(np.median(clips[0].times[:, 1] - clips[0].times[:, 0]))
    run.final_model(head, store, extractors, {"task": "regression", "target": target, "grid_step_s": step}, clips,
                    **({"modality_targets": pretrain} if pretrain else {}))  # PAIR's pre-training ratings (LstmHead only)
    more = summarise(result, clips)
    if head.kind == "lasso":
        more["alphas"] = [m.alpha_ for m in fold_models]
        more["top_coefficients"] = write_coefficients(run, feature_names(store, extractors), [m.coef_ for m in fold_models])
    write_predictions(run, result, clips, target, more["inter_rater_ccc"])
    return run.finish("regression", result.model, {result.model: scored(result, clips)}, result.folds, len(clips), **more)


@dataclass
class CvResult:
    model: str  # the head's kind, the name its scores go under
    folds: list[dict] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    fold_of: dict[str, int] = field(default_factory=dict)


def cross_validate_clips(head: Head, clips: list[ClipData], k: int, seed: int, modality_targets: list | None = None,
                         on_fold=None) -> tuple[CvResult, list[Head]]:
    """Fit a clone of ``head`` on k-1 folds of clips, predict the held-out clips, k times; also the fold models.
    ``modality_targets``: per clip, PAIR's per-modality pre-training ratings (``LstmHead.fit``), or None."""
    result, models = CvResult(head.kind), []
    splits = fold_splits(len(clips), k, seed)
    for fold, model, test_idx in cross_validate(head, clips, None, splits, {"modality_targets": modality_targets}):
        test = [clips[i] for i in test_idx]
        predictions = dict(zip([c.clip_id for c in test], model.predict(test)))
        row = {"fold": fold, "test_clips": [c.clip_id for c in test]}
        if all(len(c.target) > 1 for c in test):  # time series: the mean of each test clip's scores
            per_clip = {c.clip_id: regression_scores(c.target, predictions[c.clip_id]) for c in test}
            scores = {m: float(np.nanmean([s[m] for s in per_clip.values()])) for m in METRICS}
            row |= {"scores": {head.kind: scores}, "per_clip": per_clip}
        else:  # one value per clip: scores over the fold's test clips (a clip alone has no r or CCC)
            scores = regression_scores(np.concatenate([c.target for c in test]), np.concatenate([predictions[c.clip_id] for c in test]))
            row |= {"scores": {head.kind: scores}}
        result.folds.append(row)
        result.predictions.update(predictions)
        result.fold_of.update({c.clip_id: fold for c in test})
        models.append(model)
        if on_fold:
            on_fold({"fold": fold, **scores})
    return result, models


def scored(result: CvResult, clips: list[ClipData]) -> dict:
    """metrics.json's entry of the model: its ``aggregate`` over folds and its ``out_of_fold`` scores (every test step of
    every clip together: between-clip differences included, so they run higher than the per-clip ones)."""
    return {"aggregate": {m: mean_std([f["scores"][result.model][m] for f in result.folds]) for m in METRICS},
            "out_of_fold": regression_scores(np.concatenate([c.target for c in clips]),
                                             np.concatenate([result.predictions[c.clip_id] for c in clips]))}


def summarise(result: CvResult, clips: list[ClipData]) -> dict:
    """What a regression run adds to metrics.json: how it was scored, the human ceiling, how many steps."""
    return {"grain": "per clip" if all(len(c.target) > 1 for c in clips) else "per fold (one value per clip)",
            "inter_rater_ccc": mean_std([c.gold.agreement for c in clips]), "n_steps": int(sum(len(c.target) for c in clips))}


def write_predictions(run: RunFolder, result: CvResult, clips: list[ClipData], target: str, ceiling: dict) -> None:
    """predictions.csv (gold and predicted of every step of every clip, out of fold) and the trajectory + fold plots."""
    from mvfx.heads.plots import fold_scores_plot, trajectories_plot

    rows = [
        {"clip_id": c.clip_id, "fold": result.fold_of[c.clip_id], "start_s": t0, "end_s": t1, "gold": y, "predicted": p}
        for c in clips
        for (t0, t1), y, p in zip(c.times, c.target, result.predictions[c.clip_id])
    ]
    run.table("predictions.csv", pd.DataFrame(rows))
    trajectories_plot(run.path / "trajectories.png", clips[:4], result.predictions, target)
    fold_scores_plot(run.path / "folds.png", [f["scores"][result.model] for f in result.folds], ceiling, target)


def feature_names(store: FeatureStore, extractors: list[str]) -> list[str]:
    return [f"{e}:{n}" for e in extractors for n in store.attrs(e)["feature_names"]]


def write_coefficients(run: RunFolder, names: list[str], coefs: list[np.ndarray]) -> list[dict]:
    """coefficients.csv/.png over the folds' LASSO models (mean ± std, largest |mean| first); returns the top rows."""
    from mvfx.heads.plots import coefficients_plot

    stacked = np.stack(coefs)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    order = np.argsort(-np.abs(mean))
    table = pd.DataFrame({"feature": np.array(names)[order], "coef_mean": mean[order], "coef_std": std[order],
                          "nonzero_folds": (stacked[:, order] != 0).sum(axis=0)})
    run.table("coefficients.csv", table)
    top = order[:TOP_COEFFICIENTS]
    coefficients_plot(run.path / "coefficients.png", [names[i] for i in top], mean[top], std[top])
    return table.head(10).to_dict("records")
