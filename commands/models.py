"""`mvfx retrieve`, `mvfx embed` and `mvfx report`: using trained models and comparing runs."""
from __future__ import annotations

import click
from rich.table import Table

from mvfx.commands.common import console, out


@click.command("retrieve")
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
    from mvfx.heads.retrieval import correspondence_head, embed_store, other_side, rank
    from mvfx.stores import open_store

    head = correspondence_head(model_dir)
    labels = head.training_.get("labels", {})
    ranked = rank(head.model_, embed_store(open_store(store_path), head), query, side, top, labels)
    other = other_side(side)
    table = Table("rank", f"{other} of clip", "cosine" if head.objective == "retrieve" else "P(match)", "emotion")
    for position, hit in enumerate(ranked, start=1):
        table.add_row(str(position), hit.clip_id, f"{hit.score:.3f}", hit.emotion)
    out.print(f"{side} of {query} ({labels.get(query, '?')}) -> {other}:")
    out.print(table)


@click.command("embed")
@click.argument("store_path", metavar="STORE")
@click.option("--model", "model_dir", required=True, help="Run folder of `mvfx train correspond`.")
@click.option("--out", "-o", "out_path", required=True, help="File to write (.npz): clip ids and unit-norm embeddings per modality.")
def embed(store_path, model_dir, out_path) -> None:
    """Export the correspondence embeddings of a whole store, for an external vector index (FAISS, ...)."""
    import numpy as np

    from mvfx.heads.retrieval import correspondence_head, embed_store, embedding_arrays
    from mvfx.stores import open_store

    head = correspondence_head(model_dir)
    embeddings = embed_store(open_store(store_path), head)
    np.savez(out_path, **embedding_arrays(embeddings, head.embed))
    console.print(f"wrote {len(embeddings['video'])} video and {len(embeddings['music'])} music embeddings to {out_path}")


@click.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("--html", "html_dir", default=None, metavar="DIR",
              help="Also write an offline HTML report into DIR: this table, and per run its metrics, plots, predictions and time lines.")
def report(runs: tuple[str, ...], html_dir: str | None) -> None:
    """Compare run folders (metrics.json + config.json) in one table; with --html, also as web pages that work offline."""
    from mvfx.heads.report import comparison_table, read_run

    headers, body = comparison_table([read_run(run) for run in runs])
    table = Table(*headers)
    for cells in body:
        table.add_row(*cells)
    out.print(table)
    if html_dir:
        from mvfx.reports import write_runs_report

        result = write_runs_report(list(runs), html_dir)
        console.print(f"wrote {result.pages} pages ({result.bytes / 2**20:.1f} MiB) in {result.seconds:.1f} s: open {result.index}")
