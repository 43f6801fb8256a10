"""Corpus discovery: a folder (recursive), a glob, or a manifest CSV.

Clip ids are stable: the path relative to the corpus folder (or to the
glob's fixed prefix) without its extension, with '/' separators, unless a
manifest gives them explicitly.
"""
from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import MvfxError

MEDIA_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .flv .wmv .ogv "
    ".ogg .oga .opus .mp3 .wav .flac .m4a .aac .wma".split()
)


@dataclass(frozen=True)
class ClipSource:
    """One clip of a corpus: its stable id and where it lives."""

    clip_id: str
    path: str


def discover(corpus: str) -> list[ClipSource]:
    """Every clip of ``corpus`` (folder, glob pattern or manifest CSV), sorted by id."""
    if os.path.isdir(corpus):
        clips = _from_folder(Path(corpus))
    elif corpus.lower().endswith(".csv") and os.path.isfile(corpus):
        clips = _from_manifest(Path(corpus))
    elif glob.has_magic(corpus):
        clips = _from_glob(corpus)
    elif os.path.isfile(corpus):
        clips = [ClipSource(Path(corpus).stem, str(Path(corpus).resolve()))]
    else:
        raise MvfxError(f"{corpus}: no such folder, file, glob match or manifest CSV")
    ids = [c.clip_id for c in clips]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise MvfxError(f"{corpus}: clip ids are not unique ({', '.join(dupes[:5])}); use a manifest CSV")
    return sorted(clips, key=lambda c: c.clip_id)


def _clip_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _from_folder(root: Path) -> list[ClipSource]:
    root = root.resolve()
    return [
        ClipSource(_clip_id(p, root), str(p))
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES and not p.name.startswith(".")
    ]


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
        clip_id = (row.get("clip_id") or "").strip() or path.stem
        clips.append(ClipSource(clip_id, str(path.resolve())))
    return clips
