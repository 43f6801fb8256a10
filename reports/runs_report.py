"""`mvfx report RUN... --html DIR`: run folders as a static HTML site.

    DIR/index.html              the runs side by side (the table `mvfx report` prints), links to each run
    DIR/runs/<run>.html         one page per run: configuration, metrics with their spread over folds, per-fold
                                scores, the run's PNGs (confusion matrix, ROC, trajectories, folds, coefficients),
                                per-clip predictions and the time lines `mvfx predict` drew
    DIR/runs/<run>/             copies of those PNGs and CSVs (the report needs nothing outside DIR)

Predictions are looked for in the run folder (predictions.csv: the out-of-fold predictions of cross-validation;
timelines/) and in RUN/predictions/, where `mvfx predict RUN ... --out RUN/predictions[/NAME]` writes
(predictions.csv and timelines/<clip>.png at any depth below it).
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pandas as pd

from mvfx.heads.metrics import spread
from mvfx.heads.report import comparison_table, read_metrics, read_run
from mvfx.reports.site import ReportResult, Site, file_name

MAX_CLIP_ROWS = 1000  # clips listed per predictions table (the CSV, copied beside the page, has them all)
MAX_TIMELINES = 60  # time-line PNGs shown per predictions folder
MAX_COPY_BYTES = 50 << 20  # a predictions.csv larger than this is summarised but not copied
PICTURES = {  # the PNGs that runs write, and what they show (for alt text)
    "confusion.png": "confusion matrix of the out-of-fold predictions (rows: true class, columns: predicted)",
    "roc.png": "one-vs-rest ROC curves of the out-of-fold probabilities, with their AUC",
    "trajectories.png": "predicted against gold time series for a few clips",
    "folds.png": "test scores per fold",
    "coefficients.png": "the largest LASSO coefficients, mean and spread over folds",
}
SKIP_COLUMNS = {"fold", "start_s", "end_s"}


def write_runs_report(runs: list[str | Path], out: str | Path) -> ReportResult:
    """Write the report of the run folders ``runs`` into ``out`` (new, empty, or a report written before)."""
    started = time.perf_counter()
    folders = [Path(r) for r in runs]
    rows = [read_run(f) for f in folders]
    names: dict[str, int] = {}
    pages = []
    for folder in folders:
        base = file_name(folder.name)
        names[base] = names.get(base, 0) + 1
        pages.append(f"runs/{base}" + (f"-{names[base]}" if names[base] > 1 else "") + ".html")
    site = Site(out, ", ".join(f.name for f in folders), [("Runs", "index.html")], started)
    notes: list[str] = []
    for folder, row, page in zip(folders, rows, pages):
        _run_page(site, folder, row, page, notes)
    headers, body = comparison_table(rows)
    site.page("runs_index.html", "index.html", headers=headers, body=body, pages=pages,
              folders=[str(f) for f in folders])
    return site.result(notes)


def _is_stat(value) -> bool:
    return isinstance(value, dict) and "mean" in value


def _metric_tables(metrics: dict) -> tuple[list[str], list[dict]]:
    """(metric names, one row per model: name, main?, metric -> 'mean ± std') from each model's ``aggregate``."""
    models = {name: model["aggregate"] for name, model in metrics["models"].items()}
    names = list(dict.fromkeys(m for stats in models.values() for m, v in stats.items() if _is_stat(v)))
    rows = [{"model": model, "main": model == metrics["main"] and len(models) > 1,
             "values": [spread(stats.get(m)) for m in names]} for model, stats in models.items()]
    return names, rows


def _scalar(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fold_table(metrics: dict) -> tuple[list[str], list[list]]:
    """Per-fold scores of the main model, and how many clips each fold tested."""
    columns: list[str] = []
    rows = []
    for fold in metrics["folds"]:
        values = {k: v for k, v in fold["scores"].get(metrics["main"], {}).items() if _scalar(v)}
        values["test clips"] = len(fold["test_clips"])
        for k in values:
            if k not in columns:
                columns.append(k)
        rows.append((fold.get("fold", len(rows)), values))
    return columns, [[fold, *(values.get(c) for c in columns)] for fold, values in rows]


def _facts(config: dict, metrics: dict) -> list[tuple[str, str]]:
    facts = [("model", str(config.get("model", "?"))), ("features", ", ".join(config.get("features", []))),
             ("target", str(config.get("target", config.get("task", ""))))]
    for key in ("store", "store_commit", "labels", "folds", "seed", "use_split"):
        if config.get(key) is not None:
            facts.append((key.replace("_", " "), str(config[key])))
    if config.get("random_weight_features"):
        facts.append(("random weights", "features extracted with random weights: " + ", ".join(config["random_weight_features"])))
    for key in ("grain", "n_clips", "n_steps", "chance_accuracy", "seconds"):
        value = metrics.get(key)
        if value is not None:
            facts.append((key.replace("n_", "").replace("_", " "), f"{value:.3f}" if isinstance(value, float) else str(value)))
    if _is_stat(metrics.get("inter_rater_ccc")):
        facts.append(("inter-rater CCC (ceiling)", spread(metrics["inter_rater_ccc"])))
    for direction, scores in metrics.get("retrieval", {}).items():
        facts.append((f"retrieval, {direction.replace('_', ' ')}", ", ".join(f"{k.replace('top', 'top-')} {spread(v)}" for k, v in scores.items())))
    if metrics.get("loss"):
        facts.append(("reconstruction MSE per epoch", " → ".join(f"{v:.4f}" for v in metrics["loss"])))
    if config.get("params"):
        facts.append(("parameters", ", ".join(f"{k}={v}" for k, v in sorted(config["params"].items()) if not isinstance(v, (list, dict)))))
    return facts


def _run_page(site: Site, folder: Path, row: dict, page: str, notes: list[str]) -> None:
    here = page.removesuffix(".html")  # runs/<run>: the page's files
    local = here.split("/", 1)[1]
    config, metrics = read_metrics(folder)
    names, models = _metric_tables(metrics)
    fold_columns, folds = _fold_table(metrics)
    pictures = []
    for png in sorted(folder.glob("*.png")):
        shutil.copyfile(png, site.image(f"{here}/{png.name}"))
        what = PICTURES.get(png.name, f"a plot the run wrote ({png.stem.replace('_', ' ')})")
        pictures.append({"src": f"{local}/{png.name}", "alt": f"{row['run']}: {what}", "name": png.name})
    coefficients = [c for c in metrics.get("top_coefficients", []) if isinstance(c, dict)]
    sources = []
    if (folder / "predictions.csv").is_file() or (folder / "timelines").is_dir():
        sources.append(_predictions(site, folder, folder, "out-of-fold predictions (cross-validation)", here, local, notes))
    predicted = folder / "predictions"
    if predicted.is_dir():
        found = sorted({p.parent for p in predicted.rglob("predictions.csv")} | {p.parent for p in predicted.rglob("timelines") if p.is_dir()})
        for k, where in enumerate(found):
            label = f"mvfx predict: {where.relative_to(folder)}"
            sources.append(_predictions(site, folder, where, label, f"{here}/predicted-{k}", f"{local}/predicted-{k}", notes))
    site.page("run.html", page, run=row, folder=str(folder), facts=_facts(config, metrics), metric_names=names, models=models,
              fold_columns=fold_columns, folds=folds, pictures=pictures, coefficients=coefficients[:30], sources=sources)


def _predictions(site: Site, run: Path, where: Path, label: str, here: str, local: str, notes: list[str]) -> dict:
    """One folder's predictions.csv (as a per-clip table) and timelines/*.png (copied, up to MAX_TIMELINES)."""
    source = {"label": label, "csv": None, "columns": [], "rows": [], "clips": 0, "steps": False, "timelines": [],
              "more_timelines": 0, "note": ""}
    csv = where / "predictions.csv"
    if csv.is_file():
        table = pd.read_csv(csv, dtype={"clip_id": str, "predicted": str, "label": str, "best_music": str}, keep_default_na=False)
        columns, rows, steps = _per_clip(table)
        source.update(columns=columns, rows=rows[:MAX_CLIP_ROWS], clips=len(rows), steps=steps)
        if csv.stat().st_size <= MAX_COPY_BYTES:
            shutil.copyfile(csv, site.path(f"{here}/predictions.csv"))
            source["csv"] = f"{local}/predictions.csv"
        else:
            source["note"] = f"{csv} is too large to copy into the report ({csv.stat().st_size >> 20} MiB)"
            notes.append(source["note"])
    timelines = sorted((where / "timelines").glob("*.png")) if (where / "timelines").is_dir() else []
    for png in timelines[:MAX_TIMELINES]:
        shutil.copyfile(png, site.image(f"{here}/timelines/{png.name}"))
        source["timelines"].append({"src": f"{local}/timelines/{png.name}", "clip": png.stem,
                                    "alt": f"time line of the predictions for clip {png.stem} ({label})"})
    source["more_timelines"] = max(0, len(timelines) - MAX_TIMELINES)
    return source


def _per_clip(table: pd.DataFrame) -> tuple[list[str], list[list], bool]:
    """One row per clip: as they are when the CSV has one row per clip; else the number of rows (time steps or
    windows), the mean of each numeric column and the most frequent value of each text column."""
    if "clip_id" not in table or table.empty:
        return list(table.columns), table.head(MAX_CLIP_ROWS).values.tolist(), False
    keep = [c for c in table.columns if c not in SKIP_COLUMNS or c == "fold"]
    if not table["clip_id"].duplicated().any():
        return keep, [[_cell(v) for v in r] for r in table[keep].itertuples(index=False)], False
    groups = table.groupby("clip_id", sort=True)
    columns = ["clip_id", "rows"]
    out = pd.DataFrame({"clip_id": list(groups.groups), "rows": groups.size().to_numpy()})
    for c in keep:
        if c == "clip_id":
            continue
        if pd.api.types.is_numeric_dtype(table[c]) and c != "fold":
            out[f"mean {c}"] = groups[c].mean().to_numpy()
            columns.append(f"mean {c}")
        else:
            out[c] = groups[c].agg(lambda s: s.mode().iat[0] if len(s.mode()) else "").to_numpy()
            columns.append(c)
    return columns, [[_cell(v) for v in r] for r in out[columns].itertuples(index=False)], True


def _cell(value):
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return round(value, 4)
    return value
