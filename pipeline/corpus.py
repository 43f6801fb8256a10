"""Corpus discovery: a folder (recursive), a glob, or a manifest (CSV or Parquet).

Clip ids are stable: the path relative to the corpus folder (or to the
glob's fixed prefix) without its extension, with '/' separators, unless a
manifest gives them explicitly. Name bytes that are not UTF-8 appear in the
id as %XX (``media.names.printable``, reversible); the path keeps the real
bytes so the file still opens. Paths are made absolute, not resolved: a
symlink stays the path it was found at (the folder or the manifest's own
folder is resolved once).

A manifest is a table with a ``path`` column (relative paths are relative
to the manifest's folder) and optionally ``clip_id`` (default: the file's
stem) and ``duration_s`` (seconds, when the user already knows it; it rides
along with the clip to its task). Other columns are ignored. A bad row is a
one-line error naming ``file:line`` (CSV) or ``file: row N`` (Parquet).

A folder corpus also reports what looks like a clip but is not one: a
dangling symlink, a symlink loop, a folder named ``x.mp4``, a FIFO. Each
becomes a one-line discovery problem (recorded in the store's failures
table by the run), never a silent gap.

Discovery of a large corpus takes seconds (100,000 files: about 1 s for a
manifest or a warm local folder); ``on_found(n)`` is called now and then
with the number of clips found so far, for a progress display.
"""
from __future__ import annotations

import csv
import errno
import glob
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mvfx.media.errors import MvfxError
from mvfx.media.names import printable

MEDIA_SUFFIXES = frozenset(
    [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv"]
    + [".ogg", ".oga", ".opus", ".mp3", ".wav", ".flac", ".m4a", ".aac", ".wma"]
)
MANIFEST_SUFFIXES = (".csv", ".parquet")
MANIFEST_COLUMNS = ("path", "clip_id", "duration_s")
FOUND_EVERY = 1000  # clips between two on_found calls

Found = Callable[[int], None]  # number of clips found so far


@dataclass(frozen=True, slots=True)
class ClipSource:
    """One clip of a corpus: its stable id, where it lives, and its duration when a manifest gave one."""

    clip_id: str
    path: str
    duration_s: float | None = None


@dataclass
class Discovery:
    """The clips of a corpus, sorted by id, and the entries that looked like clips but cannot be read."""

    clips: list[ClipSource]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (id, one-line reason)


def discover(corpus: str, on_found: Found | None = None) -> Discovery:
    """Every clip of ``corpus`` (folder, glob pattern, manifest CSV or Parquet), sorted by id, and what could not be a clip."""
    problems: list[tuple[str, str]] = []
    found = _counted(on_found)
    if os.path.isdir(corpus):
        clips = found(_from_folder(corpus, problems))
    elif corpus.lower().endswith(MANIFEST_SUFFIXES) and os.path.isfile(corpus):
        clips = found(_from_manifest(corpus))  # refuses a repeated id itself, naming both lines
    elif glob.has_magic(corpus):
        clips = found(_from_glob(corpus))
    elif os.path.isfile(corpus):
        clips = found([ClipSource(printable(Path(corpus).stem), os.path.abspath(corpus))])
    else:
        raise MvfxError(f"{printable(corpus)}: no such folder, file, glob match or manifest (.csv, .parquet)")
    clips.sort(key=lambda c: c.clip_id)
    dupes = sorted({a.clip_id for a, b in itertools.pairwise(clips) if a.clip_id == b.clip_id})  # sorted: repeats are neighbours
    if dupes:
        raise MvfxError(f"{printable(corpus)}: clip ids are not unique ({', '.join(dupes[:5])}); use a manifest with a clip_id column")
    return Discovery(clips, sorted(problems))


def _counted(on_found: Found | None) -> Callable[[Iterable[ClipSource]], list[ClipSource]]:
    """Collect clips into a list, telling ``on_found`` the count every ``FOUND_EVERY`` clips and at the end."""
    def collect(clips: Iterable[ClipSource]) -> list[ClipSource]:
        if on_found is None:
            return list(clips)
        out: list[ClipSource] = []
        for clip in clips:
            out.append(clip)
            if len(out) % FOUND_EVERY == 0:
                on_found(len(out))
        on_found(len(out))
        return out

    return collect


def _clip_id(relative: str) -> str:
    """The id of a file at ``relative`` (a '/'-separated path under the corpus root): that path without its extension."""
    return printable(os.path.splitext(relative)[0].replace(os.sep, "/"))


def _not_a_clip(path: Path) -> str | None:
    """Why an entry named like media is not a readable file, or None when it is one."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symlink loop"
            return f"dangling symlink (-> {printable(os.readlink(path))})"
    if path.is_dir():
        return "a folder named like a media file"
    if not path.is_file():
        return "not a regular file"
    return None


def _is_media(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in MEDIA_SUFFIXES


def _from_folder(corpus: str, problems: list[tuple[str, str]]) -> Iterator[ClipSource]:
    """Files named like media under ``corpus``, recursively (symlinked folders are not followed).

    ``os.scandir`` tells a regular file from the rest without a stat on most file systems, so only the odd
    entries (symlinks, folders named like media, FIFOs) cost a system call of their own.
    """
    root = os.path.realpath(corpus)
    cut = len(os.path.join(root, ""))  # the root and its separator, cut from each path for the id
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except PermissionError:  # as Path.rglob: an unreadable folder is skipped
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            if not _is_media(entry.name):
                continue
            relative = entry.path[cut:]
            if entry.is_file(follow_symlinks=False):
                yield ClipSource(_clip_id(relative), entry.path)
                continue
            reason = _not_a_clip(Path(entry.path))
            if reason is None:  # a symlink to a file
                yield ClipSource(_clip_id(relative), entry.path)
            else:
                problems.append((_clip_id(relative), f"{printable(entry.path)}: {reason}"))


def _from_glob(pattern: str) -> Iterator[ClipSource]:
    prefix = pattern.split("*")[0].split("?")[0].split("[")[0]
    root = os.path.join(os.path.abspath(prefix if prefix.endswith(os.sep) else os.path.dirname(prefix) or "."), "")
    for match in glob.iglob(pattern, recursive=True):
        if os.path.isfile(match):
            path = os.path.abspath(match)
            yield ClipSource(_clip_id(path[len(root):] if path.startswith(root) else os.path.relpath(path, root)), path)


def _from_manifest(manifest: str) -> Iterator[ClipSource]:
    """The rows of a manifest as clips; ids must be unique (the error names both rows)."""
    base = os.path.dirname(os.path.realpath(manifest))
    parquet = manifest.lower().endswith(".parquet")
    rows = _parquet_rows(manifest) if parquet else _csv_rows(manifest)
    name = printable(manifest)

    def where(n: int) -> str:  # made only for a message: 100,000 rows need no 100,000 strings
        return f"{name}: row {n}" if parquet else f"{name}:{n}"

    seen: dict[str, int] = {}  # clip id -> the line (or row) that first gave it
    for n, raw_path, raw_id, raw_duration in rows:
        raw = (raw_path or "").strip()
        if not raw:
            raise MvfxError(f"{where(n)}: empty path")
        path = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(base, raw))
        clip_id = printable((raw_id or "").strip()) or printable(os.path.splitext(os.path.basename(path))[0])
        if clip_id in seen:
            raise MvfxError(f"{where(n)}: clip id {clip_id!r} is not unique (also at {where(seen[clip_id])})")
        seen[clip_id] = n
        yield ClipSource(clip_id, path, None if raw_duration is None else _duration(raw_duration, n, where))


def _duration(raw, n: int, where: Callable[[int], str]) -> float | None:
    if isinstance(raw, str) and not raw.strip():
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        raise MvfxError(f"{where(n)}: duration_s {printable(str(raw))!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        if isinstance(raw, float) and math.isnan(raw):  # a missing value in a Parquet float column
            return None
        raise MvfxError(f"{where(n)}: duration_s {raw!r} must be a positive number of seconds")
    return seconds


def _missing_path(manifest: str, columns) -> MvfxError:
    return MvfxError(f"{printable(manifest)}: a manifest needs a 'path' column (and optionally 'clip_id', 'duration_s'); "
                     f"found {', '.join(map(str, columns)) or 'none'}")


def _csv_rows(manifest: str) -> Iterator[tuple[int, str | None, str | None, str | None]]:
    """(line, path, clip_id, duration_s) per row; bytes that are not UTF-8 stay the file system's bytes."""
    name = printable(manifest)
    with open(manifest, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if "path" not in header:
            raise _missing_path(manifest, header)
        at = [header.index(c) if c in header else None for c in MANIFEST_COLUMNS]
        try:
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue  # a blank line
                yield (reader.line_num, *(row[i] if i is not None and i < len(row) else None for i in at))
        except csv.Error as exc:
            raise MvfxError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None


def _parquet_rows(manifest: str) -> Iterator[tuple[int, str | None, str | None, object]]:
    """(row, counted from 1, path, clip_id, duration_s) per row of a Parquet manifest."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MvfxError(f"{printable(manifest)}: reading a Parquet manifest needs pyarrow (pip install pyarrow), "
                        "or give the manifest as CSV") from None
    name = printable(manifest)
    try:
        present = pq.read_schema(manifest).names
        if "path" not in present:
            raise _missing_path(manifest, present)
        table = pq.read_table(manifest, columns=[c for c in MANIFEST_COLUMNS if c in present])
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise MvfxError(f"{name}: not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    columns = []
    for column in MANIFEST_COLUMNS:
        if column not in present:
            columns.append([None] * table.num_rows)
            continue
        values = table.column(column).to_pylist()
        if column != "duration_s" and any(v is not None and not isinstance(v, str) for v in values):
            raise MvfxError(f"{name}: column {column!r} must hold text, not {table.schema.field(column).type}")
        columns.append(values)
    yield from ((n, *row) for n, row in enumerate(zip(*columns), start=1))
