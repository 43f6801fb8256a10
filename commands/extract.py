"""`mvfx extract`, `mvfx extractors` and `mvfx demo-corpus`: getting features out of videos."""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mvfx.commands.common import console, out, parse_extractor_options
from mvfx.media.errors import MvfxError
from mvfx.pipeline.timing import describe

if TYPE_CHECKING:
    from mvfx.pipeline.plan import RunSettings
    from mvfx.pipeline.run import RunSummary


@click.command()
@click.argument("corpus")
@click.option("--store", "-s", required=True,
              help="Store to write (created if missing): a local Zarr folder; NAME.icechunk for a local Icechunk repository; "
                   "s3://BUCKET/PREFIX (also gs://, az://) for Icechunk on object storage, credentials from the environment.")
@click.option("--extractors", "-e", default="colour,emobase", show_default=True,
              help="Comma-separated extractor names; see `mvfx extractors`.")
@click.option("--option", "-o", "options", multiple=True, metavar="EXTRACTOR.KEY=VALUE",
              help="Override an extractor setting, e.g. -o emobase.window_s=1.0 (repeatable).")
@click.option("--workers", "-j", type=int, default=0, show_default=True,
              help="Worker processes; 0 = one per core (in-process for tiny jobs), 1 = in-process.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Run on an existing Dask cluster.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|sim",
              help="Where neural extractors run; auto = a GPU when torch sees one. sim[:tflops=T,...] is a simulated GPU "
                   "for tests and benchmarks: the GPU path with passes that take modelled time and compute nothing "
                   "(its rows are marked 'simulated'; docs/gpu.md).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]),
              help="Storage type of feature values.")
@click.option("--random-weights", is_flag=True,
              help="Run neural extractors with seeded random weights (tests, dry runs); marked 'random' in the store.")
@click.option("--break-lock", is_flag=True, help="Take over a store locked from another host (a crashed run on this host needs no flag).")
@click.option("--no-compact", is_flag=True, help="Leave committed parts uncompacted (faster to stop; see `store compact`).")
@click.option("--clip-memory", default="auto", show_default=True, metavar="SIZE",
              help="Decoded frames one clip may hold, e.g. 2GB; a clip that needs more is recorded as failed. "
                   "auto = half of a worker's memory.")
@click.option("--commit-every", default=10.0, show_default=True, metavar="SECONDS", type=click.FloatRange(min=0),
              help="How often the clips and failures tables are written and, in an Icechunk store, finished clips "
                   "committed (made visible, and safe from a crash of this command); 0 = after every clip.")
@click.option("--clips-in-flight", default="auto", show_default=True, metavar="N|auto",
              help="Clips each worker process decodes at once; their windows and frames share the networks' forward passes. "
                   "auto = 1 on the CPU, 3 on a GPU.")
@click.option("--decode", "decode", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Video decoding: cuda = NVDEC on the GPU; auto = NVDEC when a GPU is used and the codec allows. "
                   "Where NVDEC cannot be used, clips are decoded on the CPU and the summary says why.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and stop: clips to do, extractors and their weights, workers, threads, GPU share, and "
                   "the memory the first clip to do needs. Nothing is written; the store need not exist.")
def extract(corpus, store, extractors, options, workers, scheduler, device, dtype, random_weights, break_lock, no_compact,
            clip_memory, commit_every, clips_in_flight, decode, dry_run) -> None:
    """Extract features for every clip of CORPUS into a store.

    CORPUS is a folder (searched recursively), a quoted glob ("clips/*.mp4") or a
    manifest, CSV or Parquet, with a path column and optionally clip_id and
    duration_s (relative paths are relative to the manifest's folder; other
    columns are ignored). Each clip is decoded once for all
    extractors and streamed through them in pieces, so memory does not grow
    with a clip's duration; long clips show their own progress in decoded
    seconds. Pairs (clip, extractor) already in the store are skipped, so
    rerunning a stopped command finishes it. Exit status is 0 only when no clip failed.

    \b
    On a Dask cluster whose workers share no file system, write to object storage:
      mvfx extract clips/ --store s3://lab/features --scheduler tcp://scheduler:8786
    Workers write their clips' features straight to the bucket; this command commits
    them as Icechunk transactions (`mvfx store log` lists them).
    """
    from mvfx.extractors.torch_device import resolve_device
    from mvfx.pipeline.plan import RunSettings

    names = tuple(n.strip() for n in extractors.split(",") if n.strip())
    settings = RunSettings(
        corpus, store, names, parse_extractor_options(options), workers=workers or None, scheduler=scheduler,
        device=resolve_device(device), dtype=dtype, break_lock=break_lock, compact=not no_compact,
        random_weights=random_weights, clip_memory=_parse_size(clip_memory), commit_every_s=commit_every,
        clips_in_flight=_parse_in_flight(clips_in_flight), decode=decode,
    )
    if dry_run:
        print_plan(settings)
        return
    summary = extract_with_progress(settings)
    print_summary(summary, store)
    sys.exit(0 if summary.ok else 1)


def print_plan(settings: RunSettings) -> None:
    """The plan of ``settings`` against the store as it is now (if it exists), in a few lines; nothing is written."""
    from mvfx.pipeline.plan import StoredState, clip_need, plan
    from mvfx.stores import is_store, open_store

    state = StoredState(open_store(settings.store)) if is_store(settings.store) else None
    planned = plan(settings, state)
    for line in planned.describe(clip_need(planned)):
        out.print(escape(line))
    out.print("nothing was run (--dry-run)")


def extract_with_progress(settings: RunSettings) -> RunSummary:
    """The run of ``settings``, with a corpus bar in clips and, under it, a bar in decoded seconds per clip in flight.

    Before them, a count of the clips found (a large folder takes a while) and of those checked against the store.
    """
    from mvfx.pipeline.plan import plan
    from mvfx.pipeline.run import RunObserver, execute

    class ProgressBars(RunObserver):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=console,
            )
            self.run_bar = self.plan_bar = None
            self.clip_bars: dict[str, int] = {}

        def planning(self, stage: str, done: int, total: int | None) -> None:
            if self.plan_bar is None:
                self.plan_bar = self.progress.add_task("[bold]discover", total=None, unit="clips found", last="")
            if stage == "discover":
                self.progress.update(self.plan_bar, completed=done)
            else:
                self.progress.update(self.plan_bar, description="[bold]plan", total=total, completed=done, unit="clips checked")

        def drop_plan(self) -> None:  # its count has served: the run's own bars (or an error) follow
            if self.plan_bar is not None:
                self.progress.remove_task(self.plan_bar)
                self.plan_bar = None

        def started(self, n_tasks: int, where: str) -> None:
            self.drop_plan()
            console.print(escape(f"{n_tasks} clips to process with {', '.join(settings.extractors)} on {where}"))
            self.run_bar = self.progress.add_task("[bold]extract", total=n_tasks, unit="clips", last="")

        def decoding(self, clip_id: str, decoded_s: float, duration_s: float) -> None:
            if clip_id not in self.clip_bars:
                self.clip_bars[clip_id] = self.progress.add_task(f"  {clip_id}", total=round(duration_s) or None,
                                                                 unit="s decoded", last="")
            self.progress.update(self.clip_bars[clip_id], completed=round(decoded_s))

        def finished(self, result) -> None:
            if result.clip_id in self.clip_bars:
                self.progress.remove_task(self.clip_bars.pop(result.clip_id))
            self.progress.update(self.run_bar, advance=1, last=f"{result.clip_id} [{result.status}]")

    bars = ProgressBars()
    with bars.progress:
        try:
            return execute(plan(settings, on_plan=bars.planning), bars)
        finally:
            bars.drop_plan()


def _parse_in_flight(text: str) -> int:
    """'auto' -> 0, else a positive count."""
    if text.strip().lower() == "auto":
        return 0
    if not text.strip().isdigit() or int(text) < 1:
        raise MvfxError(f"--clips-in-flight {text!r}: expected a whole number of at least 1, or auto")
    return int(text)


def _parse_size(text: str) -> int:
    """'auto' -> 0, else bytes from '2GB', '512 MiB', ..."""
    if text.strip().lower() == "auto":
        return 0
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except ValueError:
        raise MvfxError(f"--clip-memory {text!r}: expected a size such as 2GB or 512MiB, or auto") from None
    if size <= 0:
        raise MvfxError(f"--clip-memory {text!r}: must be more than 0")
    return size


def print_summary(summary: RunSummary, store: str) -> None:
    for notice in summary.notices:
        console.print(f"[yellow]note:[/yellow] {escape(notice)}")
    for clip_id, packets, spans in summary.damaged:
        console.print(f"[yellow]damaged[/yellow] {escape(clip_id)}: {packets} undecodable packets skipped at {spans} s; the rest is stored")
    for clip_id, spans in summary.missing:
        console.print(f"[yellow]stream ends early[/yellow] {escape(clip_id)}: {escape(spans)} s has no decodable data")
    for clip_id, same_as in summary.duplicates:
        console.print(f"[yellow]duplicate[/yellow] {escape(clip_id)} has the same content as {escape(same_as)}")
    processed = summary.pairs_done + summary.pairs_failed
    rate = summary.clips / summary.seconds if summary.seconds else 0.0
    for clip_id, failure in summary.failures[:20]:
        console.print(f"[red]failed[/red] {escape(f'{clip_id} [{failure.extractor}/{failure.stage}]: {failure.message}')}")
    if len(summary.failures) > 20:
        console.print(f"... and {len(summary.failures) - 20} more: see `mvfx store info {store}`")
    console.print(
        f"[bold]done[/bold]: {summary.clips} clips, {summary.pairs_done} clip x extractor results written, "
        f"{summary.pairs_skipped} already in the store (skipped), {summary.pairs_failed + summary.clips_failed} failed "
        f"({processed} attempted) in {summary.seconds:.1f} s ({rate:.2f} clips/s, {summary.executor})"
    )
    if summary.threads:
        console.print(escape(f"threads: {summary.threads}" + "".join(f"; {s}" for s in summary.settings)))
    if summary.gpus:
        console.print(f"GPUs: {summary.gpus}")
    if summary.stage_seconds:
        console.print(f"time per stage, summed over clips: {describe(summary.stage_seconds)}")


@click.command("extractors")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_extractors(as_json: bool) -> None:
    """List every extractor: output size, time grid, input and weights."""
    import mvfx.extractors as registry
    from mvfx.extractors.weights import status

    rows = []
    for name in registry.names():
        e = registry.create(name)
        weights = {w.name: status(w)[0] for w in e.weights}
        rows.append({
            "name": name, "version": e.version, "modality": e.modality, "dim": e.dim,
            "time_grid": e.time_grid.as_dict(), "input": e.describe()["input"],
            "weights": weights or "none needed", "summary": e.summary, "feature_names": e.feature_names,
        })
    if as_json:  # plain json: rich's print_json takes seconds to lay out the feature names' 100 000 lines
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("name", "dim", "time grid", "input", "weights", "what")
    for r in rows:
        g = r["time_grid"]
        grid = f"{g['kind']} {g['window_s']:.3g}s / hop {g['hop_s']:.3g}s" if g["window_s"] else g["kind"]
        inp = {k: v for k, v in r["input"].items() if v is not None and k != "kind"}
        weights = r["weights"] if isinstance(r["weights"], str) else ", ".join(f"{k}: {v}" for k, v in r["weights"].items())
        table.add_row(r["name"], str(r["dim"]), grid, ", ".join(f"{k}={v}" for k, v in inp.items()), weights, r["summary"])
    out.print(table)


@click.command("demo-corpus")
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
    from mvfx.pipeline.demo_corpus import write_demo_corpus

    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise MvfxError(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 320x180") from None
    with Progress(TextColumn("[bold]demo corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as p:
        task = p.add_task("clips", total=clips)
        paths = write_demo_corpus(out_dir, n_clips=clips, seconds=seconds, seed=seed, size=(width, height),
                                  on_clip=lambda _: p.advance(task))
    console.print(f"wrote {len(paths)} clips, labels.csv and annotations.csv to {out_dir}")
