"""Reading run folders back (config.json + metrics.json) for `mvfx report` and its HTML pages.

metrics.json has one format for every run kind (``runs.folder.RunFolder.finish``); one written before it
(version 1: no ``format`` field, each run kind its own shape) is read into that format (``read_metrics``), so old
runs compare beside new ones.
"""
from __future__ import annotations

import json
from pathlib import Path

from mvfx.heads.metrics import METRICS_FORMAT, METRICS_VERSION, spread
from mvfx.media.errors import MvfxError

# Column titles of the metrics a run may have: regression runs the first three, classification (and match) runs the
# next three, the autoencoder the last.
METRIC_NAMES = {"ccc": "CCC", "pearson": "r", "rmse": "RMSE", "accuracy": "accuracy", "f1": "macro F1", "roc_auc": "ROC AUC",
                "mse": "reconstruction MSE"}


def read_metrics(folder: str | Path) -> tuple[dict, dict]:
    """(config, metrics) of the run folder ``folder``, the metrics in this mvfx's format."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MvfxError(f"{folder}: not a run folder ({exc})") from None
    written = (metrics.get("format", METRICS_FORMAT), metrics.get("format_version", 1))
    if written == (METRICS_FORMAT, METRICS_VERSION):
        return config, metrics
    if written == (METRICS_FORMAT, 1):
        return config, _from_version_1(metrics, config["model"])
    raise MvfxError(f"{folder / 'metrics.json'}: format {written[0]} v{written[1]}; this mvfx reads {METRICS_FORMAT} v1 and v{METRICS_VERSION}")


def _from_version_1(metrics: dict, kind: str) -> dict:
    """A version-1 metrics.json in the current format: per-model ``aggregate``/``pooled`` (fusion), per-configuration
    ``runs`` (MVF) or one flat ``aggregate`` (the others) become ``models``; each fold's scores go under the model."""
    if "runs" in metrics:
        models = {name: {"aggregate": run["aggregate"], "out_of_fold": run["pooled"]} for name, run in metrics["runs"].items()}
    elif "main" in metrics:
        models = {name: {"aggregate": aggregate, "out_of_fold": metrics["pooled"][name]} for name, aggregate in metrics["aggregate"].items()}
    else:
        models = {kind: {"aggregate": metrics["aggregate"], "out_of_fold": metrics.get("pooled", {})}}
    main = metrics.get("main", kind)
    folds = [fold if "scores" in fold else {"fold": fold.get("fold", k), "test_clips": fold.get("test_clips", []),
                                            "scores": {main: {m: v for m, v in fold.items() if m not in ("fold", "test_clips")}}}
             for k, fold in enumerate(metrics.get("folds", []))]
    return {**metrics, "main": main, "models": models, "folds": folds}


def scores_text(aggregate: dict) -> str:
    """'accuracy 0.972 ± 0.062, macro F1 0.963 ± 0.083, ...': a model's aggregate metrics in one line."""
    return ", ".join(f"{METRIC_NAMES[m]} {spread(stat)}" for m, stat in aggregate.items() if m in METRIC_NAMES)


def read_run(folder: str | Path) -> dict:
    """One row of the comparison table: run name, model, features, target, ``metrics`` (name -> mean, std, folds
    defined) of the run's main model, ceiling, clips."""
    config, metrics = read_metrics(folder)
    aggregate = metrics["models"][metrics["main"]]["aggregate"]
    return {
        "run": Path(folder).name,
        "model": config["model"] + (f" ({fusion})" if isinstance(fusion := config.get("params", {}).get("fusion"), str) else ""),
        "features": ",".join(config["features"]),
        "target": config.get("target", config.get("task", "")),
        "metrics": {m: aggregate[m] for m in METRIC_NAMES if isinstance(aggregate.get(m), dict) and "mean" in aggregate[m]},
        "inter_rater_ccc": metrics.get("inter_rater_ccc", {}).get("mean"),
        "n_clips": metrics.get("n_clips"),
    }


def comparison_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table of runs (``read_run`` rows) that `mvfx report` prints and its HTML shows: titles, cells."""
    metrics = [m for m in METRIC_NAMES if any(row["metrics"].get(m) for row in rows)]
    headers = ["run", "model", "features", "target", *(METRIC_NAMES[m] for m in metrics), "inter-rater CCC", "clips"]
    body = []
    for row in rows:
        ceiling = row["inter_rater_ccc"]
        body.append([row["run"], row["model"], row["features"], row["target"], *(spread(row["metrics"].get(m)) for m in metrics),
                     f"{ceiling:.3f}" if ceiling is not None and ceiling == ceiling else "-", str(row["n_clips"] or "")])
    return headers, body
