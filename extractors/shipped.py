"""Name lists that mvfx ships in ``extractors/data/`` (class, category and feature names in output order).

Reading them needs no deep-learning or signal library, so listing extractors
(``mvfx extractors``) stays fast and light; the tests check each file against
the library it was taken from wherever that library is installed.
"""
from __future__ import annotations

import functools
from importlib.resources import files


@functools.cache
def shipped_lines(filename: str) -> tuple[str, ...]:
    """The non-empty lines of ``extractors/data/FILENAME``, stripped; lines starting with ``#`` are comments."""
    text = files("mvfx.extractors").joinpath(f"data/{filename}").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
