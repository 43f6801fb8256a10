"""Corpus discovery: a folder (recursive), a glob, or a manifest CSV.

Clip ids are stable: the path relative to the corpus folder (or to the
glob's fixed prefix) without its extension, with '/' separators, unless a
manifest gives them explicitly. Name bytes that are not UTF-8 appear in the
id as %XX (``media.names.printable``, reversible); the path keeps the real
bytes so the file still opens.

A folder corpus also reports what looks like a clip but is not one: a
dangling symlink, a symlink loop, a folder named ``x.mp4``, a FIFO. Each
becomes a one-line discovery problem (recorded in the store's failures
table by the run), never a silent gap.
"""
from __future__ import annotations

import csv
import errno
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from mvfx.media.errors import MvfxError
from mvfx.media.names import printable

MEDIA_SUFFIXES = frozenset(
    [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv"]
    + [".ogg", ".oga", ".opus", ".mp3", ".wav", ".flac", ".m4a", ".aac", ".wma"]
)


@dataclass(frozen=True)
class ClipSource:
    """One clip of a corpus: its stable id and where it lives."""

    clip_id: str
    path: str


@dataclass
class Discovery:
    """The clips of a corpus, sorted by id, and the entries that looked like clips but cannot be read."""

    clips: list[ClipSource]
    problems: list[tuple[str, str]] = field(default_factory=list)  # (id, one-line reason)


def discover(corpus: str) -> Discovery:
    """Every clip of ``corpus`` (folder, glob pattern or manifest CSV), sorted by id, and what could not be a clip."""
    problems: list[tuple[str, str]] = []
    if os.path.isdir(corpus):
        clips = _from_folder(Path(corpus), problems)
    elif corpus.lower().endswith(".csv") and os.path.isfile(corpus):
        clips = _from_manifest(Path(corpus))
    elif glob.has_magic(corpus):
        clips = _from_glob(corpus)
    elif os.path.isfile(corpus):
        clips = [ClipSource(printable(Path(corpus).stem), str(Path(corpus).resolve()))]
    else:
        raise MvfxError(f"{printable(corpus)}: no such folder, file, glob match or manifest CSV")
    ids = [c.clip_id for c in clips]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise MvfxError(f"{printable(corpus)}: clip ids are not unique ({', '.join(dupes[:5])}); use a manifest CSV")
    return Discovery(sorted(clips, key=lambda c: c.clip_id), sorted(problems))


def _clip_id(path: Path, root: Path) -> str:
    return printable(path.relative_to(root).with_suffix("").as_posix())


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


def _from_folder(root: Path, problems: list[tuple[str, str]]) -> list[ClipSource]:
    root = root.resolve()
    clips = []
    for p in root.rglob("*"):
        if p.suffix.lower() not in MEDIA_SUFFIXES or p.name.startswith("."):
            continue
        reason = _not_a_clip(p)
        if reason is None:
            clips.append(ClipSource(_clip_id(p, root), str(p)))
        else:
            problems.append((_clip_id(p, root), f"{printable(str(p))}: {reason}"))
    return clips


def _from_glob(pattern: str) -> list[ClipSource]:
    prefix = pattern.split("*")[0].split("?")[0].split("[")[0]
    root = Path(prefix if prefix.endswith(os.sep) else os.path.dirname(prefix) or ".").resolve()
    paths = [Path(p).resolve() for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    return [ClipSource(_clip_id(p, root), str(p)) for p in paths]


def _from_manifest(manifest: Path) -> list[ClipSource]:
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise MvfxError(f"{manifest}: a manifest needs a 'path' column (and optionally 'clip_id')")
        rows = list(reader)
    base = manifest.resolve().parent
    clips = []
    for n, row in enumerate(rows, start=2):
        raw = (row.get("path") or "").strip()
        if not raw:
            raise MvfxError(f"{manifest}:{n}: empty path")
        path = Path(raw) if os.path.isabs(raw) else base / raw
        clip_id = (row.get("clip_id") or "").strip() or printable(path.stem)
        clips.append(ClipSource(clip_id, str(path.resolve())))
    return clips
