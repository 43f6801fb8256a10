"""mvfx command line: extract features from music videos into a store, inspect it, train heads.

Every command prints one-line errors (never a traceback) and exits non-zero
when something failed.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pipeline.errors import MvfxError

# Piped output (logs, files) gets wide tables instead of rich's 80-column default.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


class MvfxGroup(click.Group):
    """Turns MvfxError (and interrupts) into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MvfxError as exc:
            console.print(f"[red]error:[/red] {exc}")
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: committed clips are safe; rerun the same command to finish")
            sys.exit(130)


@click.group(cls=MvfxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mvfx")
def main() -> None:
    """mvfx: decode music videos once, extract audio/visual features into a Zarr store,
    and train lightweight emotion heads on the cached features.

    \b
    Typical session:
      mvfx demo-corpus demo/corpus            # small labelled synthetic corpus
      mvfx extract demo/corpus --store demo/features.zarr --extractors colour,emobase
      mvfx store info demo/features.zarr
      mvfx train lasso demo/features.zarr --labels demo/corpus/annotations.csv -f emobase --out demo/runs/lasso
      mvfx weights list                       # pretrained files: what is there, how to get the rest
    """


def _parse_options(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = defaultdict(dict)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, field = key.partition(".")
        if not (sep and dot and name and field):
            raise MvfxError(f"--option {pair!r}: expected EXTRACTOR.KEY=VALUE, e.g. emobase.window_s=1.0")
        options[name][field] = value
    return dict(options)


@main.command()
@click.argument("corpus")
@click.option("--store", "-s", required=True, help="Store to write (created if missing); a Zarr folder.")
@click.option("--extractors", "-e", default="colour,emobase", show_default=True,
              help="Comma-separated extractor names; see `mvfx extractors`.")
@click.option("--option", "-o", "options", multiple=True, metavar="EXTRACTOR.KEY=VALUE",
              help="Override an extractor setting, e.g. -o emobase.window_s=1.0 (repeatable).")
@click.option("--workers", "-j", type=int, default=0, show_default=True,
              help="Worker processes; 0 = one per core (in-process for tiny jobs), 1 = in-process.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Run on an existing Dask cluster.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="Where neural extractors run; auto = a GPU when torch sees one.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="Storage type of feature values.")
@click.option("--random-weights", is_flag=True,
              help="Run neural extractors with seeded random weights (tests, dry runs); marked 'random' in the store.")
@click.option("--break-lock", is_flag=True, help="Take over a store whose lock was left by a dead run.")
@click.option("--no-compact", is_flag=True, help="Leave committed parts uncompacted (faster to stop; see `store compact`).")
def extract(corpus, store, extractors, options, workers, scheduler, device, dtype, random_weights, break_lock, no_compact) -> None:
    """Extract features for every clip of CORPUS into a store.

    CORPUS is a folder (searched recursively), a quoted glob ("clips/*.mp4") or a
    manifest CSV with columns clip_id,path. Each clip is decoded once for all
    extractors. Pairs (clip, extractor) already in the store are skipped, so
    rerunning a stopped command finishes it. Exit status is 0 only when no clip failed.
    """
    from pipeline.run import run_extract

    from extractors.torch_device import resolve_device

    names = [n.strip() for n in extractors.split(",") if n.strip()]
    device = resolve_device(device)
    progress = Progress(
        TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=console,
    )
    task_id = None

    def on_start(n_tasks: int, where: str) -> None:
        nonlocal task_id
        console.print(f"{n_tasks} clips to process with {', '.join(names)} on {where}")
        task_id = progress.add_task("extract", total=n_tasks, last="")

    def on_result(result) -> None:
        progress.update(task_id, advance=1, last=f"{result.clip_id} [{result.status}]")

    with progress:
        summary = run_extract(
            corpus, store, names, _parse_options(options), workers=workers or None, scheduler=scheduler,
            device=device, dtype=dtype, break_lock=break_lock, compact=not no_compact, random_weights=random_weights,
            on_start=on_start, on_result=on_result,
        )
    _print_summary(summary, store)
    sys.exit(0 if summary.ok else 1)


def _print_summary(summary, store: str) -> None:
    processed = summary.pairs_done + summary.pairs_failed
    rate = summary.clips / summary.seconds if summary.seconds else 0.0
    for clip_id, failure in summary.failures[:20]:
        console.print(f"[red]failed[/red] {clip_id} [{failure.extractor}/{failure.stage}]: {failure.message}")
    if len(summary.failures) > 20:
        console.print(f"... and {len(summary.failures) - 20} more: see `mvfx store info {store}`")
    console.print(
        f"[bold]done[/bold]: {summary.clips} clips, {summary.pairs_done} clip x extractor results written, "
        f"{summary.pairs_skipped} already in the store (skipped), {summary.pairs_failed + summary.clips_failed} failed "
        f"({processed} attempted) in {summary.seconds:.1f} s ({rate:.2f} clips/s, {summary.executor})"
    )


@main.command("extractors")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_extractors(as_json: bool) -> None:
    """List every extractor: output size, time grid, input and weights."""
    import extractors as registry
    from extractors.weights import status

    rows = []
    for name in registry.names():
        e = registry.create(name)
        weights = {w: status(w)[0] for w in e.weight_names}
        rows.append({
            "name": name, "version": e.version, "modality": e.modality, "dim": e.dim,
            "time_grid": e.time_grid.as_dict(), "input": e.describe()["input"],
            "weights": weights or "none needed", "summary": e.summary,
        })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("name", "dim", "time grid", "input", "weights", "what")
    for r in rows:
        g = r["time_grid"]
        grid = f"{g['kind']} {g['window_s']:.3g}s / hop {g['hop_s']:.3g}s" if g["window_s"] else g["kind"]
        inp = {k: v for k, v in r["input"].items() if v is not None and k != "kind"}
        weights = r["weights"] if isinstance(r["weights"], str) else ", ".join(f"{k}: {v}" for k, v in r["weights"].items())
        table.add_row(r["name"], str(r["dim"]), grid, ", ".join(f"{k}={v}" for k, v in inp.items()), weights, r["summary"])
    out.print(table)


@main.group()
def store() -> None:
    """Inspect and maintain feature stores."""


@store.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def store_info(path: str, as_json: bool) -> None:
    """Show clips, and per extractor: dim, clips done, rows, weights mark."""
    from stores import open_store

    s = open_store(path)
    summary = s.summary()
    if as_json:
        out.print_json(json.dumps(summary))
        return
    attrs = s.store_attrs()
    out.print(f"[bold]{path}[/bold]: {attrs.get('format')} v{attrs.get('format_version')}, "
              f"written by mvfx {attrs.get('mvfx_version')}, created {attrs.get('created')}")
    out.print(f"clips: {summary['clips']}   failures: {summary['failures']}")
    table = Table("extractor", "version", "dim", "clips", "rows", "weights")
    for name, e in summary["extractors"].items():
        weights = "[yellow]random[/yellow]" if e["weights"] == "random" else str(e["weights"])[:20]
        table.add_row(name, str(e["version"]), str(e["dim"]), str(e["clips"]), str(e["rows"]), weights)
    out.print(table)
    failures = s.failures()
    for row in failures.head(10).itertuples():
        out.print(f"  [red]failed[/red] {row.clip_id} [{row.extractor}/{row.stage}]: {row.message}")
    if len(failures) > 10:
        out.print(f"  ... {len(failures) - 10} more failures")


@store.command("compact")
@click.argument("path")
@click.option("--break-lock", is_flag=True, help="Take over a store whose lock was left by a dead run.")
def store_compact(path: str, break_lock: bool) -> None:
    """Rewrite committed parts into contiguous arrays for fast sequential reading."""
    from stores import open_writer

    with open_writer(path, break_lock=break_lock) as writer:
        moved = writer.compact()
    console.print(f"compacted {moved} parts in {path}")


@main.group()
def weights() -> None:
    """Pretrained weight files: list, fetch (with network), import (air-gapped), verify.

    Files live in $MVFX_HOME/weights (default ~/.cache/mvfx/weights). Nothing is
    ever downloaded during extraction.
    """


@weights.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def weights_list(as_json: bool) -> None:
    """Every registered weight file with its status: missing, ok, unverified, wrong hash."""
    from extractors.weights import REGISTRY, cache_dir, status

    rows = []
    for name, e in sorted(REGISTRY.items()):
        state, digest = status(name)
        rows.append({"name": name, "status": state, "sha256": digest, "expected_sha256": e.sha256, "file": e.filename,
                     "extractors": list(e.extractors), "url": e.url, "licence": e.licence, "approx_mb": e.approx_mb,
                     "source": e.source})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    out.print(f"weights cache: {cache_dir()}")
    colours = {"ok": "green", "unverified": "yellow", "missing": "red", "wrong hash": "red"}
    table = Table("name", "status", "file", "MB", "licence", "used by")
    for r in rows:
        table.add_row(r["name"], f"[{colours[r['status']]}]{r['status']}[/]", r["file"], f"{r['approx_mb']:g}",
                      r["licence"], ", ".join(r["extractors"]))
    out.print(table)
    for r in rows:
        out.print(f"{r['name']}: {r['url']}\n  {r['source']}")


@weights.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every registered file.")
def weights_fetch(names: tuple[str, ...], fetch_all: bool) -> None:
    """Download weight files into the cache (resumable, verified). Needs a network."""
    from extractors.weights import REGISTRY, entry, fetch

    chosen = sorted(REGISTRY) if fetch_all else list(names)
    if not chosen:
        raise MvfxError("name a weight file (see `mvfx weights list`) or use --all")
    for name in chosen:
        e = entry(name)
        with Progress(TextColumn(f"[bold]{e.filename}"), BarColumn(), TextColumn("{task.completed:,.0f} B"),
                      TimeElapsedColumn(), console=console) as p:
            task = p.add_task("fetch", total=None)
            digest = fetch(name, on_progress=lambda done, total: p.update(task, completed=done, total=total))
        console.print(f"fetched {name}: sha256 {digest}")


@weights.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Import even if the hash differs (e.g. a fine-tuned checkpoint); recorded as such.")
def weights_import(name: str, file: str, force: bool) -> None:
    """Copy a weight file you already have into the cache, after checking its sha256."""
    from extractors.weights import cached_path, import_file

    digest = import_file(name, file, force=force)
    console.print(f"imported {name} -> {cached_path(name)} (sha256 {digest})")


@weights.command("verify")
def weights_verify() -> None:
    """Re-hash every cached file; exit 1 if one has the wrong hash."""
    from extractors.weights import REGISTRY, status

    bad = 0
    for name in sorted(REGISTRY):
        state, digest = status(name)
        if state != "missing":
            out.print(f"{name}: {state} ({digest})")
        bad += state == "wrong hash"
    sys.exit(1 if bad else 0)


@store.command("verify")
@click.argument("path")
def store_verify(path: str) -> None:
    """Check every committed clip against the index: shapes, time order, NaN/Inf, checksums.

    Exit status 1 with the list of problems when any is found.
    """
    from stores import open_store

    s = open_store(path)
    problems = s.verify()
    for problem in problems:
        out.print(f"[red]problem[/red] {problem}")
    n = sum(len(s.index(e)) for e in s.extractors())
    out.print(f"{path}: {n} clip x extractor results checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


@store.command("export")
@click.argument("path")
@click.argument("out_h5")
def store_export(path: str, out_h5: str) -> None:
    """Write the store as one HDF5 file (same hierarchy and attributes; gzip), for collaborators."""
    from stores import open_store
    from stores.exchange import export_hdf5

    export_hdf5(open_store(path), out_h5)
    console.print(f"exported {path} -> {out_h5}")


@store.command("import")
@click.argument("h5_file")
@click.argument("new_path")
def store_import(h5_file: str, new_path: str) -> None:
    """Restore a Zarr store from an exported HDF5 file (NEW_PATH must not exist)."""
    from stores.exchange import import_hdf5

    import_hdf5(h5_file, new_path)
    console.print(f"imported {h5_file} -> {new_path}")


@store.command("import-features")
@click.argument("folder")
@click.option("--name", required=True, help="Name to store the features under (features/NAME).")
@click.option("--store", "-s", "store_path", required=True, help="Store to add them to (created if missing).")
@click.option("--time-column", default="time", show_default=True, help="Column with each row's start time in seconds.")
@click.option("--hop", type=float, default=None, help="Fixed seconds per row, when the CSVs have no time column.")
@click.option("--break-lock", is_flag=True, help="Take over a store whose lock was left by a dead run.")
def store_import_features(folder: str, name: str, store_path: str, time_column: str, hop, break_lock: bool) -> None:
    """Import features computed elsewhere: FOLDER/*.csv, one per clip (file stem = clip id),
    one row per time step, other columns = named features."""
    from pipeline.import_features import import_feature_csvs

    imported, problems = import_feature_csvs(folder, name, store_path, time_column, hop, break_lock)
    for problem in problems:
        console.print(f"[red]failed[/red] {problem}")
    console.print(f"imported {imported} clips as {name} into {store_path}, {len(problems)} failed")
    sys.exit(1 if problems else 0)


@main.group()
def train() -> None:
    """Train heads on features already in a store (no video is decoded again)."""


def _regression_options(fn):
    options = [
        click.argument("store_path", metavar="STORE"),
        click.option("--labels", required=True, help="CSV: clip_id,annotator,time_s,arousal,valence (EWE gold) or clip_id,arousal,valence."),
        click.option("--features", "-f", required=True, help="Comma-separated extractors in the store, e.g. emobase,colour."),
        click.option("--target", type=click.Choice(["arousal", "valence"]), default="arousal", show_default=True),
        click.option("--out", "-o", required=True, help="Run folder for metrics.json, config.json, model and PNGs."),
        click.option("--folds", default=5, show_default=True, help="k-fold over clips (never over time steps of a clip)."),
        click.option("--seed", default=0, show_default=True),
        click.option("--where", multiple=True, metavar="COLUMN=VALUE", help="Keep only label rows with this value (e.g. modality=music)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _where(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise MvfxError(f"--where {pair!r}: expected COLUMN=VALUE")
        out[key] = value
    return out


def _run_training(**kwargs) -> None:
    import warnings

    from heads.dataset import RandomWeightsWarning
    from heads.train import train_regression

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        with Progress(TextColumn("[bold]folds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[last]}"), console=console) as p:
            task = p.add_task("folds", total=kwargs["folds"], last="")

            def on_fold(fold: dict) -> None:
                p.update(task, advance=1, last=f"fold {fold['fold']}: CCC {fold['ccc']:.3f}")

            try:
                metrics = train_regression(on_fold=on_fold, **kwargs)
            except ValueError as exc:
                raise MvfxError(str(exc)) from None
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")
    agg, ceiling = metrics["aggregate"], metrics["inter_rater_ccc"]
    console.print(
        f"[bold]{kwargs['target']}[/bold] over {metrics['n_clips']} clips, {kwargs['folds']} folds: "
        f"CCC {agg['ccc']['mean']:.3f} ± {agg['ccc']['std']:.3f}, r {agg['pearson']['mean']:.3f} ± {agg['pearson']['std']:.3f}, "
        f"RMSE {agg['rmse']['mean']:.3f} ± {agg['rmse']['std']:.3f} (inter-rater CCC {ceiling['mean']:.3f}) "
        f"in {metrics['seconds']:.0f} s -> {kwargs['out']}"
    )


@train.command("lasso")
@_regression_options
def train_lasso(store_path, labels, features, target, out, folds, seed, where) -> None:
    """LASSO regression of valence or arousal per time step (MuVi baseline).

    Features are standardised on the training folds, alpha is chosen by an inner
    cross-validation over clips, and the largest coefficients are reported by name
    (coefficients.csv / .png).
    """
    _run_training(store_path=store_path, labels=labels, extractors=features.split(","), target=target, out=out,
                  model="lasso", folds=folds, seed=seed, where=_where(where))


@train.command("lstm")
@_regression_options
@click.option("--fusion", type=click.Choice(["none", "early", "late", "pair"]), default="none", show_default=True,
              help="none: one feature set; early: concatenated; late: one LSTM per set + dense; pair: late, pre-trained per modality.")
@click.option("--seq-len", default=4, show_default=True, help="Steps of context (the current one included).")
@click.option("--pretrain-labels", multiple=True, metavar="EXTRACTOR=CSV",
              help="PAIR: each modality's own ratings, e.g. emobase=annotations_music.csv.")
@click.option("--epochs", default=300, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--patience", default=20, show_default=True, help="Epochs without validation improvement before stopping.")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
def train_lstm(store_path, labels, features, target, out, folds, seed, where, fusion, seq_len, pretrain_labels, epochs, patience, lr) -> None:
    """LSTM regression (2 x 256, dropout 0.2, tanh) on the previous --seq-len steps, with early/late/PAIR fusion."""
    from heads.lstm import LstmConfig

    cfg = LstmConfig(seq_len=seq_len, max_epochs=epochs, patience=patience, lr=lr, seed=seed)
    _run_training(store_path=store_path, labels=labels, extractors=features.split(","), target=target, out=out,
                  model="lstm", folds=folds, seed=seed, where=_where(where), fusion=fusion, lstm_config=cfg,
                  pretrain_labels=dict(p.split("=", 1) for p in pretrain_labels))


def _fold_progress(total: int, describe):
    """A rich progress bar over folds; ``describe(fold_row)`` gives the text after it."""
    progress = Progress(TextColumn("[bold]folds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=console)
    task = progress.add_task("folds", total=total, last="")
    return progress, lambda row: progress.update(task, advance=1, last=describe(row))


def _warn_random(caught) -> None:
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")


@train.command("fusion")
@click.argument("store_path", metavar="STORE")
@click.option("--labels", required=True, help="CSV clip_id,label[,split] (exciting, fear, neutral, relaxation, sad, tension, ...).")
@click.option("--features", "-f", required=True, help="Comma-separated extractors fused by one model, e.g. vggish,colour.")
@click.option("--ensemble", multiple=True, metavar="SET",
              help="Another feature set (comma-separated) whose model joins an ensemble averaging class probabilities.")
@click.option("--out", "-o", required=True, help="Run folder.")
@click.option("--folds", default=6, show_default=True, help="Stratified k-fold over clips.")
@click.option("--use-split", is_flag=True, help="Use the labels' split column (train/val/test) instead of k-fold.")
@click.option("--seed", default=0, show_default=True)
def train_fusion_cmd(store_path, labels, features, ensemble, out, folds, use_split, seed) -> None:
    """Late-fusion emotion classifier over clip-level features (MVED), optionally an ensemble.

    Writes metrics.json (accuracy, macro F1, one-vs-rest ROC AUC per fold and
    aggregate), confusion.png, roc.png, predictions.csv and model.pt.
    """
    import warnings

    from heads.dataset import RandomWeightsWarning
    from heads.train_classify import train_fusion

    sets = [features.split(",")] + [e.split(",") for e in ensemble]
    progress, on_fold = _fold_progress(1 if use_split else folds, lambda r: f"fold {r['fold']}: accuracy {r['accuracy']:.2f}")
    with warnings.catch_warnings(record=True) as caught, progress:
        warnings.simplefilter("always", RandomWeightsWarning)
        metrics = train_fusion(store_path, labels, sets, out, folds, seed, use_split, on_fold=on_fold)
    _warn_random(caught)
    for name, agg in metrics["aggregate"].items():
        if name == "ensemble" and len(sets) == 1:
            continue
        console.print(f"[bold]{name}[/bold]: accuracy {agg['accuracy']['mean']:.3f} ± {agg['accuracy']['std']:.3f}, "
                      f"macro F1 {agg['f1']['mean']:.3f} ± {agg['f1']['std']:.3f}, ROC AUC {agg['roc_auc']['mean']:.3f}")
    console.print(f"{metrics['n_clips']} clips, {len(metrics['classes'])} classes (chance {metrics['chance_accuracy']:.3f}) "
                  f"in {metrics['seconds']:.0f} s -> {out}")


@main.group()
def pairs() -> None:
    """Music-video pairs for correspondence training."""


@pairs.command("build")
@click.option("--labels", required=True, help="CSV clip_id,label[,split].")
@click.option("--out", "-o", required=True, help="pairs.csv to write.")
@click.option("--seed", default=0, show_default=True)
def pairs_build(labels: str, out: str, seed: int) -> None:
    """Matched/mismatched pairs the EmoMV way (see heads/pairs.py): per class, half the clips stay
    matched; the rest swap music across the eight allowed emotion pairs; balanced per split."""
    from heads.pairs import build_pairs, read_class_labels

    table = build_pairs(read_class_labels(labels), seed)
    table.to_csv(out, index=False)
    counts = table.groupby(["split", "match"]).size().unstack(fill_value=0)
    for split, row in counts.iterrows():
        console.print(f"{split}: {row.get(1, 0)} matched, {row.get(0, 0)} mismatched")
    console.print(f"wrote {len(table)} pairs to {out}")


@train.command("correspond")
@click.argument("store_path", metavar="STORE")
@click.option("--pairs", "pairs_csv", required=True, help="pairs.csv from `mvfx pairs build`.")
@click.option("--video-features", required=True, help="Extractor for the video tower, e.g. slowfast_r50 or colour.")
@click.option("--music-features", required=True, help="Extractor for the music tower, e.g. vggish or emobase.")
@click.option("--out", "-o", required=True, help="Run folder.")
@click.option("--objective", type=click.Choice(["classify", "retrieve"]), default="classify", show_default=True,
              help="classify: compact bilinear pooling + match softmax; retrieve: contrastive loss on cosine distance.")
@click.option("--emotion-branches", is_flag=True, help="Multi-task: also predict each side's emotion (equal loss weights).")
@click.option("--folds", default=5, show_default=True, help="k-fold over pair groups, stratified by match.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=600, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
def train_correspond_cmd(store_path, pairs_csv, video_features, music_features, out, objective, emotion_branches, folds, seed, epochs, lr) -> None:
    """Music-video correspondence: does this music fit this video? Also the retrieval towers.

    Reports accuracy, F1 and ROC AUC on matched vs mismatched pairs, and top-1/3/5 +
    mAP retrieval (a hit = same emotion) in both directions.
    """
    import warnings

    from heads.correspond import CorrespondConfig
    from heads.dataset import RandomWeightsWarning
    from heads.train_correspond import train_correspond

    cfg = CorrespondConfig(objective=objective, emotion_branches=emotion_branches, seed=seed, max_epochs=epochs, lr=lr)
    progress, on_fold = _fold_progress(folds, lambda r: f"fold {r['fold']}: accuracy {r['accuracy']:.2f}")
    with warnings.catch_warnings(record=True) as caught, progress:
        warnings.simplefilter("always", RandomWeightsWarning)
        metrics = train_correspond(store_path, pairs_csv, video_features, music_features, out, folds, seed, cfg, on_fold)
    _warn_random(caught)
    agg, ret = metrics["aggregate"], metrics["retrieval"]
    console.print(f"[bold]match[/bold] over {metrics['n_pairs']} pairs: accuracy {agg['accuracy']['mean']:.3f} ± {agg['accuracy']['std']:.3f} "
                  f"(chance {metrics['chance_accuracy']:.2f}), F1 {agg['f1']['mean']:.3f}, ROC AUC {agg['roc_auc']['mean']:.3f}")
    for direction, scores in ret.items():
        console.print(f"[bold]{direction.replace('_', ' ')}[/bold]: top-1 {scores['top1']['mean']:.3f}, top-3 {scores['top3']['mean']:.3f}, "
                      f"top-5 {scores['top5']['mean']:.3f}, mAP {scores['map']['mean']:.3f}")
    console.print(f"in {metrics['seconds']:.0f} s -> {out}")


@main.command("retrieve")
@click.argument("store_path", metavar="STORE")
@click.option("--model", "model_dir", required=True, help="Run folder of `mvfx train correspond`.")
@click.option("--query", required=True, help="Clip id whose video (or music) asks.")
@click.option("--from", "side", type=click.Choice(["video", "music"]), default="video", show_default=True)
@click.option("--top", default=5, show_default=True)
def retrieve(store_path, model_dir, query, side, top) -> None:
    """Rank the other modality of every clip in the store for a query clip.

    Retrieval models rank by cosine similarity of the embeddings; match classifiers
    by their P(match).
    """
    from heads.train_correspond import embed_store, load_model
    from stores import open_store

    model, saved = load_model(model_dir)
    embeddings = embed_store(open_store(store_path), model, saved)
    other = "music" if side == "video" else "video"
    if query not in embeddings[side]:
        raise MvfxError(f"{store_path}: clip {query!r} has no {saved[side + '_features']} features")
    import torch

    names = list(embeddings[other])
    query_z = torch.as_tensor(embeddings[side][query])[None]
    gallery_z = torch.as_tensor(np.stack([embeddings[other][c] for c in names]))
    with torch.no_grad():
        pairs_scores = model.pair_scores(query_z, gallery_z) if side == "video" else model.pair_scores(gallery_z, query_z).T
    scores = pairs_scores[0].numpy()
    labels = saved.get("labels", {})
    table = Table("rank", f"{other} of clip", "cosine" if model.cfg.objective == "retrieve" else "P(match)", "emotion")
    for rank, i in enumerate(np.argsort(-scores, kind="stable")[:top], start=1):
        table.add_row(str(rank), names[i], f"{scores[i]:.3f}", labels.get(names[i], "?"))
    out.print(f"{side} of {query} ({labels.get(query, '?')}) -> {other}:")
    out.print(table)


@main.command("embed")
@click.argument("store_path", metavar="STORE")
@click.option("--model", "model_dir", required=True, help="Run folder of `mvfx train correspond`.")
@click.option("--out", "-o", required=True, help="File to write (.npz): clip ids and unit-norm embeddings per modality.")
def embed(store_path, model_dir, out) -> None:
    """Export the correspondence embeddings of a whole store, for an external vector index (FAISS, ...)."""
    from heads.train_correspond import embed_store, load_model
    from stores import open_store

    model, saved = load_model(model_dir)
    embeddings = embed_store(open_store(store_path), model, saved)
    arrays = {}
    for side, by_clip in embeddings.items():
        arrays[f"{side}_clip_ids"] = np.array(list(by_clip), dtype=str)
        arrays[f"{side}_embeddings"] = np.stack(list(by_clip.values())).astype(np.float32) if by_clip else np.zeros((0, model.cfg.embed), np.float32)
    np.savez(out, **arrays)
    console.print(f"wrote {len(embeddings['video'])} video and {len(embeddings['music'])} music embeddings to {out}")


@main.command("report")
@click.argument("runs", nargs=-1, required=True)
def report(runs: tuple[str, ...]) -> None:
    """Compare run folders (metrics.json + config.json) in one table."""
    from pathlib import Path

    table = Table("run", "model", "features", "target", "CCC", "r", "RMSE", "inter-rater CCC", "clips")
    for run in runs:
        folder = Path(run)
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise MvfxError(f"{folder}: not a run folder ({exc})") from None
        model = config["model"] + (f" ({config['fusion']})" if config.get("fusion") else "")
        agg = metrics.get("aggregate", {})
        cell = lambda m: f"{agg[m]['mean']:.3f} ± {agg[m]['std']:.3f}" if m in agg else "-"  # noqa: E731
        table.add_row(folder.name, model, ",".join(config["features"]), config.get("target", config.get("task", "")),
                      cell("ccc"), cell("pearson"), cell("rmse"), f"{metrics.get('inter_rater_ccc', {}).get('mean', float('nan')):.3f}",
                      str(metrics.get("n_clips", "")))
    out.print(table)


@main.command("demo-corpus")
@click.argument("out_dir")
@click.option("--clips", default=36, show_default=True, help="Number of clips (spread evenly over the 6 classes).")
@click.option("--seconds", default=10.0, show_default=True, help="Length of each clip.")
@click.option("--seed", default=0, show_default=True, help="Random seed; same seed, same files.")
@click.option("--size", default="320x180", show_default=True, help="Frame size WIDTHxHEIGHT.")
def demo_corpus(out_dir: str, clips: int, seconds: float, seed: int, size: str) -> None:
    """Write a small labelled corpus of real MP4 files (H.264 + AAC) for trying mvfx.

    Six classes (exciting, fear, neutral, relaxation, sad, tension) differ the way
    the literature describes: tempo, mode, pitch, loudness and dissonance in the
    music; brightness, hue, saturation, motion and cut rate in the picture. Writes
    labels.csv (clip_id,label,split) and annotations.csv (clip_id,annotator,time_s,
    arousal,valence at 2 Hz, several noisy annotators).
    """
    from pipeline.demo_corpus import write_demo_corpus

    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise MvfxError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 320x180") from None
    with Progress(TextColumn("[bold]demo corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as p:
        task = p.add_task("clips", total=clips)
        paths = write_demo_corpus(out_dir, n_clips=clips, seconds=seconds, seed=seed, size=(width, height),
                                  on_clip=lambda _: p.advance(task))
    console.print(f"wrote {len(paths)} clips, labels.csv and annotations.csv to {out_dir}")


if __name__ == "__main__":
    main()
