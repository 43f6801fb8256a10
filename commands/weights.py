"""`mvfx weights ...`: the registry of pretrained files: list, fetch (with network), import (air-gapped), verify."""
from __future__ import annotations

import json
import sys

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mvfx.commands.common import console, out
from mvfx.media.errors import MvfxError


@click.group()
def weights() -> None:
    """Pretrained weight files: list, fetch (with network), import (air-gapped), verify.

    Files live in $MVFX_HOME/weights (default ~/.cache/mvfx/weights). Nothing is
    ever downloaded during extraction.
    """


@weights.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def weights_list(as_json: bool) -> None:
    """Every registered weight file with its status: ok, forced (imported with --force), unverified (no published
    hash), packaged (an installed package ships it; copied in on first use), missing, wrong hash."""
    from mvfx.extractors import users_of
    from mvfx.extractors.weight_registry import REGISTRY
    from mvfx.extractors.weights import cache_dir, status

    rows = []
    for name, e in sorted(REGISTRY.items()):
        state, digest = status(name)
        rows.append({"name": name, "status": state, "sha256": digest, "expected_sha256": e.sha256, "file": e.filename,
                     "extractors": users_of(name), "url": e.url, "licence": e.licence, "approx_mb": e.approx_mb,
                     "source": e.source})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    out.print(f"weights cache: {cache_dir()}")
    colours = {"ok": "green", "forced": "yellow", "unverified": "yellow", "packaged": "green", "missing": "red", "wrong hash": "red"}
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
    from mvfx.extractors.weight_registry import REGISTRY, entry
    from mvfx.extractors.weights import fetch

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
    from mvfx.extractors.weights import cached_path, import_file

    digest = import_file(name, file, force=force)
    console.print(f"imported {name} -> {cached_path(name)} (sha256 {digest})")


@weights.command("verify")
def weights_verify() -> None:
    """Re-hash every cached file; exit 1 if one has the wrong hash."""
    from mvfx.extractors.weight_registry import REGISTRY
    from mvfx.extractors.weights import status

    bad = 0
    for name in sorted(REGISTRY):
        state, digest = status(name)
        if digest is not None:
            out.print(f"{name}: {state} ({digest})")
        bad += state == "wrong hash"
    sys.exit(1 if bad else 0)
