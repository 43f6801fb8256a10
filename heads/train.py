"""One training run of a regression head, from store + labels to a run folder."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from mvfx.heads import lasso, lstm
from mvfx.heads.dataset import build, check_weights
from mvfx.heads.labels import read_labels
from mvfx.heads.regression import cross_validate, summarise, write_run
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


@with_training_threads
def train_regression(
    store_path: str, labels: str, extractors: list[str], target: str, out: str, model: str, folds: int = 5,
    seed: int = 0, where: dict[str, str] | None = None, fusion: str = "none", lstm_config: lstm.LstmConfig | None = None,
    pretrain_labels: dict[str, str] | None = None, on_fold=None,
) -> dict:
    """Cross-validate ``model`` ("lasso" or "lstm"), fit a final model on every clip, write the run folder."""
    started = time.perf_counter()
    store = open_store(store_path)
    random = check_weights(store, extractors)
    clips = build(store, extractors, read_labels(labels, target, where))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": model, "store": str(store_path), "labels": str(labels), "features": extractors, "target": target,
        "folds": folds, "seed": seed, "where": where or {}, "random_weight_features": random,
    }
    if model == "lasso":
        coefs, alphas = [], []
        result = cross_validate(clips, folds, seed, lasso.lasso_fit_predict(extractors, seed, coefs, alphas), on_fold)
        metrics = summarise(result, clips)
        final = lasso.fit_lasso(clips, extractors, seed)
        metrics["alphas"] = alphas
        metrics["top_coefficients"] = lasso.write_lasso_outputs(out_dir, lasso.feature_names(store, extractors), coefs, final)
    else:
        cfg = lstm_config or lstm.LstmConfig(seed=seed)
        pretrain = {e: read_labels(p, target, where) for e, p in (pretrain_labels or {}).items()}
        config |= {"fusion": fusion, "lstm": dataclasses.asdict(cfg), "pretrain_labels": pretrain_labels or {}}
        result = cross_validate(clips, folds, seed, lstm.lstm_fit_predict(extractors, fusion, cfg, pretrain), on_fold)
        metrics = summarise(result, clips)
        final, scaler, groups = lstm.fit_model(clips, extractors, fusion, cfg, pretrain)
        torch.save({"state_dict": final.state_dict(), "groups": groups, "dims": [b.lstm.input_size for b in final.branches],
                    "standardiser": [(m.tolist(), s.tolist()) for m, s in scaler.stats]}, out_dir / "model.pt")
    metrics["seconds"] = time.perf_counter() - started
    write_run(out_dir, config, metrics, result, clips)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
