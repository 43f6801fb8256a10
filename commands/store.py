"""`mvfx store ...`: inspect, verify, compact, export and import feature stores."""
from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table

from mvfx.commands.common import console, out


@click.group()
def store() -> None:
    """Inspect and maintain feature stores."""


@store.command("info")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def store_info(path: str, as_json: bool) -> None:
    """Show clips, and per extractor: dim, clips done, rows, weights mark."""
    import pandas as pd

    from mvfx.stores import open_store

    s = open_store(path)
    summary = s.summary()
    if as_json:
        out.print_json(json.dumps(summary))
        return
    attrs = s.store_attrs()
    out.print(f"[bold]{path}[/bold]: {attrs.get('format')} v{attrs.get('format_version')}, "
              f"written by mvfx {attrs.get('mvfx_version')}, created {attrs.get('created')}")
    out.print(f"clips: {summary['clips']}   failures: {summary['failures']}   "
              f"damaged (undecodable packets skipped): {summary['damaged_clips']}")
    table = Table("extractor", "version", "dim", "clips", "rows", "weights")
    for name, e in summary["extractors"].items():
        weights = "[yellow]random[/yellow]" if e["weights"] == "random" else str(e["weights"])[:20]
        table.add_row(name, str(e["version"]), str(e["dim"]), str(e["clips"]), str(e["rows"]), weights)
    out.print(table)
    failures = s.failures()
    for row in failures.head(10).itertuples():
        out.print(f"  [red]failed[/red] {escape(f'{row.clip_id} [{row.extractor}/{row.stage}]: {row.message}')}")
    if len(failures) > 10:
        out.print(f"  ... {len(failures) - 10} more failures")
    clips = s.clips()
    if "damaged_packets" in clips:
        damaged = clips[pd.to_numeric(clips["damaged_packets"], errors="coerce").fillna(0) > 0]
        for row in damaged.head(10).itertuples():
            out.print(f"  [yellow]damaged[/yellow] {escape(str(row.clip_id))}: {int(row.damaged_packets)} packets skipped at {row.damaged_spans} s")
    if "missing_spans" in clips:
        for row in clips[clips["missing_spans"].fillna("").astype(str) != ""].head(10).itertuples():
            out.print(f"  [yellow]stream ends early[/yellow] {escape(str(row.clip_id))}: {escape(row.missing_spans)} s has no decodable data")


@store.command("compact")
@click.argument("path")
@click.option("--break-lock", is_flag=True, help="Take over a store locked from another host (a crashed run on this host needs no flag).")
def store_compact(path: str, break_lock: bool) -> None:
    """Rewrite committed parts into contiguous arrays for fast sequential reading."""
    from mvfx.stores import open_writer

    with open_writer(path, break_lock=break_lock) as writer:
        moved = writer.compact()
    console.print(f"compacted {moved} parts in {path}")


@store.command("verify")
@click.argument("path")
def store_verify(path: str) -> None:
    """Check every committed clip against the index: shapes, time order, NaN/Inf, checksums; feature sets
    with no clip. Also reports the failures the store records.

    Exit status 1 with the list of problems when any is found.
    """
    from mvfx.stores import open_store

    s = open_store(path)
    problems = s.verify()
    problems += [f"{name}: no clip has these features" for name in s.extractors() if not s.index(name)]
    for problem in problems:
        out.print(f"[red]problem[/red] {escape(str(problem))}")
    failures = s.failures()
    if len(failures):
        stages = failures["stage"].value_counts().to_dict()
        out.print(f"[yellow]{len(failures)} failures recorded[/yellow] ("
                  + ", ".join(f"{n} at {stage}" for stage, n in stages.items()) + f"): see `mvfx store info {path}`")
    n = sum(len(s.index(e)) for e in s.extractors())
    out.print(f"{path}: {len(s.clip_ids())} clips, {n} clip x extractor results checked, {len(problems)} problems, "
              f"{len(failures)} failures recorded")
    sys.exit(1 if problems else 0)


@store.command("export")
@click.argument("path")
@click.argument("out")
def store_export(path: str, out: str) -> None:
    """Write the store as one HDF5 file (OUT ends in .h5/.hdf5; gzip), or as a new local Zarr store (any other
    OUT), with the same hierarchy and attributes. PATH may be an Icechunk store as of a tag or commit:

    \b
      mvfx store export s3://lab/features@paper-v1 features-paper-v1.h5
    """
    from mvfx.stores import open_store
    from mvfx.stores.exchange import export_hdf5, export_zarr

    export = export_hdf5 if out.lower().endswith((".h5", ".hdf5")) else export_zarr
    export(open_store(path), out)
    console.print(f"exported {path} -> {out}")


@store.command("log")
@click.argument("path")
def store_log(path: str) -> None:
    """List the commits of an Icechunk store (a local *.icechunk folder or s3://, gs://, az://), newest first.

    Any commit id or tag reads the store as it was then: append it as STORE@REF to any command that reads a
    store, e.g. `mvfx store info s3://lab/features@4QW7...` or `mvfx train lasso s3://lab/features@paper-v1 ...`.
    """
    from mvfx.stores import store_log as commits

    table = Table("commit", "time (UTC)", "message", "clips", "tags")
    log = commits(path)
    for row in log.itertuples():
        table.add_row(row.commit, row.time, row.message, str(row.clips), row.tags)
    out.print(table)
    out.print(f"{len(log)} commits in {path}")


@store.command("tag")
@click.argument("path")
@click.argument("name")
def store_tag(path: str, name: str) -> None:
    """Tag the store's latest commit (or PATH@COMMIT) as NAME, so a paper can cite the exact features it used:
    they stay readable as PATH@NAME whatever is committed later."""
    from mvfx.stores import tag_store

    snapshot = tag_store(path, name)
    console.print(f"tagged commit {snapshot} of {path} as {name!r}; read it as {path.split('@')[0]}@{name}")


@store.command("import")
@click.argument("h5_file")
@click.argument("new_path")
def store_import(h5_file: str, new_path: str) -> None:
    """Restore a Zarr store from an exported HDF5 file (NEW_PATH must not exist)."""
    from mvfx.stores.exchange import import_hdf5

    import_hdf5(h5_file, new_path)
    console.print(f"imported {h5_file} -> {new_path}")


@store.command("import-features")
@click.argument("folder")
@click.option("--name", required=True, help="Name to store the features under (features/NAME).")
@click.option("--store", "-s", "store_path", required=True, help="Store to add them to (created if missing).")
@click.option("--time-column", default="time", show_default=True, help="Column with each row's start time in seconds.")
@click.option("--hop", type=float, default=None, help="Fixed seconds per row, when the CSVs have no time column.")
@click.option("--drop-columns", multiple=True, metavar="NAME[,NAME...]",
              help="Columns to leave out by header name (extra ids, text columns); a name no column has is an error.")
@click.option("--drop-positions", multiple=True, metavar="N[,N...]",
              help="Columns to leave out by 1-based position in the CSV line (1 = the first column), e.g. 2,991.")
@click.option("--drop-text-columns", is_flag=True,
              help="Leave out every column of text cells with no number in them (found in the first file), and say which.")
@click.option("--names-from", metavar="EXTRACTOR",
              help="Take the feature names from an extractor, e.g. emobase (openSMILE's 988 names), for a broken header; "
                   "the files' header cells are then not compared, only their number.")
@click.option("--break-lock", is_flag=True, help="Take over a store locked from another host (a crashed run on this host needs no flag).")
def store_import_features(folder: str, name: str, store_path: str, time_column: str, hop: float | None, drop_columns: tuple[str, ...],
                          drop_positions: tuple[str, ...], drop_text_columns: bool, names_from: str | None, break_lock: bool) -> None:
    """Import features computed elsewhere: FOLDER/*.csv, one per clip (file stem = clip id),
    one row per time step, other columns = named features.

    \b
    MuVi's emobase CSVs (an unnamed index column, a different emobase name repeated as every
    other header cell, a text column of liveturn_N, 988 numbers, a text column of unassigned):
      mvfx store import-features muvi_csv/ --name emobase --store muvi.zarr --hop 0.5 \\
          --drop-text-columns --names-from emobase
    (an unnamed leading index column 0, 1, 2... is dropped by itself).
    """
    from mvfx.media.errors import MvfxError
    from mvfx.pipeline.import_features import import_feature_csvs

    dropped = tuple(c.strip() for group in drop_columns for c in group.split(",") if c.strip())
    positions = [p.strip() for group in drop_positions for p in group.split(",") if p.strip()]
    if not all(p.isdigit() for p in positions):
        raise MvfxError(f"--drop-positions {','.join(positions)}: give 1-based column numbers, e.g. --drop-positions 2,991")
    result = import_feature_csvs(folder, name, store_path, time_column, hop, break_lock, dropped, names_from,
                                 tuple(int(p) for p in positions), drop_text_columns)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    for problem in result.problems[:20]:
        console.print(f"[red]failed[/red] {escape(str(problem))}")
    skipped = f", {result.skipped} skipped (imported before, unchanged)" if result.skipped else ""
    console.print(f"imported {result.imported} clips as {name} into {store_path}{skipped}, {len(result.problems)} failed")
    sys.exit(1 if result.problems else 0)


def _count_or_all(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """--clips N or 'all' (None)."""
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit():
        raise click.BadParameter(f"{value!r}: give a number of clips, or 'all'")
    return int(value)


@store.command("report")
@click.argument("path")
@click.option("--out", "-o", "out_dir", required=True, metavar="DIR",
              help="Folder to write the report into (new, empty, or a report written before).")
@click.option("--clips", "sample", default="50", show_default=True, callback=_count_or_all, metavar="N|all",
              help="Clip pages for N clips sampled deterministically (the N smallest sha1 of the clip id: the same clips "
                   "on every run, and as the store grows); 'all' for every clip (slow for a large store).")
@click.option("--failed-clips", default=50, show_default=True, metavar="N",
              help="Also give a page to up to N clips with a failure (in clip-id order), besides the sample.")
@click.option("--clip", "clip_ids", multiple=True, metavar="ID",
              help="A page for this clip; repeatable. Given, only these clips get pages (no sample).")
@click.option("--no-media", is_flag=True, help="Do not open the clips' source files for frames and waveforms.")
def store_report(path: str, out_dir: str, sample: int | None, failed_clips: int, clip_ids: tuple[str, ...], no_media: bool) -> None:
    """Write an offline HTML report of the store: provenance, extractors, counts, a sortable and filterable
    failures table, and one page per chosen clip (its record, a time line per extractor, frames and waveform
    where the source file is still there). Open DIR/index.html in a browser: it needs no network.

    Clip pages, by default: 50 clips sampled deterministically, plus every clip with a failure up to 50 more,
    so that the report of a 100,000-clip store stays quick (about 10 s). Or exactly the clips asked for:

    \b
      mvfx store report features.zarr --out report/ --clip clip_007 --clip clip_012

    PATH takes every address form of the store commands (Zarr folder, .h5 file, *.icechunk, s3://..., STORE@TAG).
    See docs/report.md.
    """
    from mvfx.reports import write_store_report
    from mvfx.stores import open_store

    def progress(done: int, total: int, clip_id: str) -> None:
        if total and (done == total or done % 10 == 0):
            console.print(f"clip pages: {done}/{total}")

    result = write_store_report(open_store(path), out_dir, sample=sample, failed=failed_clips, clip_ids=clip_ids,
                                media=not no_media, progress=progress)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"wrote {result.pages} pages and {result.images} pictures ({result.bytes / 2**20:.1f} MiB) in "
                  f"{result.seconds:.1f} s: open {result.index}")
