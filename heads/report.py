"""Reading run folders back (config.json + metrics.json) for `mvfx report`."""
from __future__ import annotations

import json
from pathlib import Path

from mvfx.heads.metrics import spread
from mvfx.media.errors import MvfxError

# Column titles of the metrics a run may have: regression runs the first three, classification runs the rest.
METRIC_NAMES = {"ccc": "CCC", "pearson": "r", "rmse": "RMSE", "accuracy": "accuracy", "f1": "macro F1", "roc_auc": "ROC AUC"}


def read_run(folder: str | Path) -> dict:
    """One row of the comparison table: run name, model, features, target, ``metrics`` (name -> mean, std, folds
    defined) of the run's main model, ceiling, clips."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MvfxError(f"{folder}: not a run folder ({exc})") from None
    aggregate = metrics.get("aggregate", {})
    if "main" in metrics:  # classification runs: one aggregate per model (members, ensemble); report the main one
        aggregate = aggregate.get(metrics["main"], {})
    return {
        "run": folder.name,
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
