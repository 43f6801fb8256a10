"""What every command module shares: the consoles, KEY=VALUE parsing, fold progress, random-weights warnings."""
from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mvfx.media.errors import MvfxError, MvfxWarning

# Piped output (logs, files) gets wide tables instead of rich's 80-column default.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def parse_assignments(pairs: tuple[str, ...], option: str, example: str) -> dict[str, str]:
    """``("a=1", "b=2")`` -> ``{"a": "1", "b": "2"}``; a one-line error naming the option when '=' is missing."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip()):
            raise MvfxError(f"{option} {pair!r}: expected KEY=VALUE, e.g. {example}")
        parsed[key.strip()] = value
    return parsed


def parse_extractor_options(pairs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``-o emobase.window_s=1.0`` pairs -> ``{"emobase": {"window_s": "1.0"}}``."""
    options: dict[str, dict[str, str]] = {}
    for key, value in parse_assignments(pairs, "--option", "emobase.window_s=1.0").items():
        name, dot, field = key.partition(".")
        if not (dot and name and field):
            raise MvfxError(f"--option {key}={value!r}: expected EXTRACTOR.KEY=VALUE, e.g. emobase.window_s=1.0")
        options.setdefault(name, {})[field] = value
    return options


def fold_progress(total: int, describe: Callable[[dict], str]) -> tuple[Progress, Callable[[dict], None]]:
    """A progress bar over folds and the callback that advances it (``describe(fold_row)`` is its text)."""
    progress = Progress(TextColumn("[bold]folds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=console)
    task = progress.add_task("folds", total=total, last="")
    return progress, lambda row: progress.update(task, advance=1, last=describe(row))


@contextlib.contextmanager
def reporting_warnings() -> Iterator[None]:
    """Collect the MvfxWarnings raised inside (random weights, unmatched labels...) and print each as one
    yellow line afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MvfxWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, MvfxWarning):
            console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
        else:  # not ours to judge: shown as Python would have shown it
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
