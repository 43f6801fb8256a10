"""Reading run folders back (config.json + metrics.json) for `mvfx report`."""
from __future__ import annotations

import json
from pathlib import Path

from mvfx.media.errors import MvfxError

REGRESSION_METRICS = ("ccc", "pearson", "rmse")


def read_run(folder: str | Path) -> dict:
    """One row of the comparison table: run name, model, features, target, metric means ± std, ceiling, clips."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MvfxError(f"{folder}: not a run folder ({exc})") from None
    aggregate = metrics.get("aggregate", {})
    return {
        "run": folder.name,
        "model": config["model"] + (f" ({fusion})" if isinstance(fusion := config.get("params", {}).get("fusion"), str) else ""),
        "features": ",".join(config["features"]),
        "target": config.get("target", config.get("task", "")),
        **{m: aggregate[m] if m in aggregate and "mean" in aggregate[m] else None for m in REGRESSION_METRICS},
        "inter_rater_ccc": metrics.get("inter_rater_ccc", {}).get("mean"),
        "n_clips": metrics.get("n_clips"),
    }
