"""`mvfx predict`: apply a trained head to a store or to videos it has never seen."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from mvfx.commands.common import console, out
from mvfx.media.errors import MvfxError

TIMELINES = 100  # the default of --timelines: every clip of a small store; mvfx.heads.predict.MAX_TIMELINES
SHOWN = 100  # rows of the predicted-class table printed (the accuracy counts every clip)
NAMED = 10  # clips not predicted named in the closing line (not_predicted.csv lists them all)


def _count_or_all(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """--timelines N|all -> N, or None for all."""
    if value.strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise click.BadParameter(f"{value!r}: give a number of clips (0 or more) or 'all'")
    return count


@click.command("predict")
@click.argument("run_dir")
@click.argument("target")
@click.option("--out", "-o", "out_dir", required=True, help="Folder for predictions.csv and timelines/<clip>.png.")
@click.option("--store", "-s", default=None,
              help="Where features of TARGET videos go (default OUT/features.zarr); features already there are reused.")
@click.option("--labels", default=None, help="CSV clip_id,label: print the truth beside each predicted class, and the accuracy.")
@click.option("--window", default=4.0, show_default=True, help="Seconds per window of a classifier's time line (hop: half).")
@click.option("--timelines", default=str(TIMELINES), show_default=True, metavar="N|all", callback=_count_or_all,
              help="Draw timelines/<clip>.png for the first N clips (clip-id order); 'all' for every clip, 0 for none. "
                   "Bounded by default: a PNG takes about ten times as long as a clip's prediction.")
@click.option("--workers", "-j", type=int, default=0, show_default=True, help="As for `mvfx extract`.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]", help="As for `mvfx extract`.")
def predict(run_dir, target, out_dir, store, labels, window, timelines, workers, device) -> None:
    """Apply the model of RUN_DIR (a folder of `mvfx train ...`) to TARGET.

    TARGET is a store, or videos: a folder, a quoted glob or a manifest CSV. For
    videos, mvfx extracts exactly the features the model reads, with the
    extractor configurations of the training store, then predicts. The model
    refuses features made another way (another extractor version or
    configuration, random instead of real weights). Writes predictions.csv (per
    clip: class and probabilities; per time step: valence/arousal; for
    correspondence: P(match) and the best-fitting music) and a PNG of the
    prediction over time for the first --timelines clips in clip-id order (100
    by default: every clip of a small store, not an hour of drawing for a large
    one). Clips stream through the model one at a time, so memory does not grow
    with the store. A clip that cannot be predicted (no features of a set the
    model reads, e.g. its extraction failed) is named with the reason, in the
    closing lines and in not_predicted.csv; the exit status is then 1.
    """
    from rich.markup import escape

    from mvfx.heads.predict import NOT_PREDICTED, predict_store
    from mvfx.heads.saved import load_head
    from mvfx.heads.threads import limited_threads
    from mvfx.stores import is_store, open_store

    head = load_head(run_dir)
    clip_ids = None
    if is_store(target):
        store_path = target
    else:
        store_path = store or str(Path(out_dir) / "features.zarr")
        clip_ids = _extract_for(head, target, store_path, workers, device)
    with limited_threads():
        predicted = predict_store(head, open_store(store_path), Path(out_dir), clip_ids, window, timelines)
    _show(predicted, labels)
    drawn = ""
    if predicted.timelines:
        drawn = f", {Path(out_dir) / 'timelines'}/"
        if predicted.timelines < predicted.clips:
            drawn += f" (time lines of the first {predicted.timelines}; --timelines all for every clip)"
    console.print(f"{predicted.clips} clips predicted by the {head.kind} model -> {predicted.csv}{drawn}")
    if predicted.not_predicted:
        n = len(predicted.not_predicted)
        named = "; ".join(f"{clip}: {why}" for clip, why in list(predicted.not_predicted.items())[:NAMED])
        more = n - NAMED
        console.print(f"[yellow]{n} clip{'s' if n > 1 else ''} not predicted[/yellow] -> {predicted.csv.parent / NOT_PREDICTED}: "
                      f"{escape(named)}{f'; and {more} more' if more > 0 else ''}")
        sys.exit(1)


def _extract_for(head, corpus: str, store_path: str, workers: int, device: str) -> list[str]:
    """Extract the model's features for ``corpus`` as the training store made them; the corpus's clip ids."""
    from mvfx.commands.extract import extract_with_progress, print_summary
    from mvfx.extractors.torch_device import resolve_device
    from mvfx.pipeline.corpus import discover
    from mvfx.pipeline.plan import RunSettings

    weights = {p["weights"] == "random" for p in head.provenance_.values() if p["weights"] != "none"}
    if len(weights) > 1:
        raise MvfxError(f"{corpus}: the model mixes features from random and real weights; extract them yourself, then predict on the store")
    options = {name: dict(p["config"]) for name, p in head.provenance_.items()}
    summary = extract_with_progress(RunSettings(corpus, store_path, tuple(head.provenance_), options, workers=workers or None,
                                                device=resolve_device(device, simulated_ok=False),
                                                random_weights=weights == {True}))
    print_summary(summary, store_path)
    return [c.clip_id for c in discover(corpus).clips]


def _show(predicted, labels: str | None) -> None:
    """A classifier's predictions as a table (the first ``SHOWN`` clips); with --labels, the truth beside each
    class and the accuracy over every clip."""
    import pandas as pd

    if "predicted" not in pd.read_csv(predicted.csv, nrows=0).columns:
        return
    table = predicted.table()
    truth = {}
    if labels:
        from mvfx.heads.data.labels import read_class_labels

        truth = dict(zip(*(read_class_labels(labels)[k] for k in ("clip_id", "label"))))
    shown = Table("clip", "predicted", "probability", *(["truth"] if truth else []))
    for _, row in table.head(SHOWN).iterrows():
        probability = row[f"p_{row['predicted']}"]
        shown.add_row(row["clip_id"], row["predicted"], f"{probability:.2f}", *([truth.get(row["clip_id"], "?")] if truth else []))
    out.print(shown)
    if len(table) > SHOWN:
        out.print(f"... and {len(table) - SHOWN} more clips in {predicted.csv}")
    known = [c for c in table["clip_id"] if c in truth]
    if known:
        right = sum(truth[c] == p for c, p in zip(table["clip_id"], table["predicted"]) if c in truth)
        console.print(f"accuracy against {labels}: {right}/{len(known)} = {right / len(known):.2f}")
