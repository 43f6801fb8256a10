"""mvfx command line: extract features from music videos into a store, inspect it, train heads.

This is the entry point only: each command group lives in its own module of
``mvfx.commands`` and the work itself in the packages. Every user error
(``MvfxError``) prints one line and exits 2; a genuine bug keeps its
traceback, so that it gets reported and fixed rather than hidden.
"""
from __future__ import annotations

import sys

import click
from rich.markup import escape

from mvfx.commands import extract, models, mvf, predict, store, train, weights
from mvfx.commands.common import console
from mvfx.media.errors import MvfxError
from mvfx.pipeline.threads import own_allocator


class MvfxGroup(click.Group):
    """Turns MvfxError (and interrupts) into one line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MvfxError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
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
      mvfx predict demo/runs/lasso new_videos/ --out demo/predictions   # apply it to videos it never saw
      mvfx weights list                       # pretrained files: what is there, how to get the rest
    """


for command in (mvf.train_mvf_cmd, mvf.train_autoencoder_cmd):
    train.train.add_command(command)
for command in (extract.extract, extract.list_extractors, extract.demo_corpus, store.store, weights.weights, train.train,
                train.pairs, predict.predict, models.retrieve, models.embed, models.report):
    main.add_command(command)


def run() -> None:
    """The ``mvfx`` program. Its process is mvfx's own from start to exit, so glibc may keep large freed blocks for
    reuse there, as in the workers mvfx starts (``threads.own_allocator``); ``main`` alone, as tests and other
    programs call it, leaves their process's allocator as it is."""
    own_allocator()
    main()


if __name__ == "__main__":
    run()
