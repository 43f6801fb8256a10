"""Zarr v3 feature store: reader, writer, staged parts and compaction.

Crash safety. A worker writes one (clip, extractor) result as a complete
zarr group under ``<store>/.staging/``; the single writer (holding the lock)
commits it with one ``os.rename`` into ``features/<ext>/parts/`` (atomic on
a local or network POSIX file system), so a reader sees all of a clip or
none of it. ``compact`` appends parts to the contiguous ``values``/``times``
arrays and their index rows to the index arrays (``stores.index``), then
publishes them with one atomic write of the extractor group's ``zarr.json``
(its ``indexed_clips`` count), then deletes the parts. A crash between those
steps leaves rows beyond the index (ignored and overwritten next time) or
parts already indexed (deleted on the next open).

Every step is O(batch) (the last chunk of each array is rewritten, never the
whole index), so a store of 100k clips commits and compacts as fast as a
small one. A format-1 store (its index one JSON attribute) is migrated when a
writer opens it; readers read both.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from mvfx.media.errors import MvfxError, is_unwritable
from mvfx.media.names import printable
from mvfx.stores.base import FeatureStore, check_format, values_checksum
from mvfx.stores.index import (
    INDEXED,
    LEGACY_INDEX,
    IndexColumns,
    Location,
    append_index,
    create_index_arrays,
    read_index_columns,
)
from mvfx.stores.layout import CLIP_COLUMNS, FAILURE_COLUMNS, FORMAT_NAME, FORMAT_VERSION, SOURCE_COLUMNS, SOURCES, chunk_rows
from mvfx.stores.lock import StoreLock
from mvfx.stores.tables import RecordTable, read_zarr_table, write_zarr_table
from mvfx.stores.zarr_async import delete_members, fill_group, read_groups

STAGING = ".staging"
TABLE_SWAPS = "tables"  # <store>/.staging/tables/<sha1 of a table's path>/: target, writing-<attempt>|new, old
COMPACT_BATCH = 256
MESSAGE_CHARS = 500  # failure messages are one line; longer ones (e.g. a column dump) are cut
# Blosc zstd level 5 with byte shuffle: on emobase / log-mel rows 1.24x / 1.38x smaller than raw float32
# (zarr's default zstd-0: 1.14x / 1.22x), still read at 350-700 MB/s; a codec every Zarr v3 reader has.
FEATURE_COMPRESSORS = [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]
# zarr's default (zstd): parts stored raw saved about 15 ms of a clip's 9 parts' 170-185 ms, and took about a fifth more
# disk until compaction.
PART_COMPRESSORS = "auto"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def part_name(clip_id: str) -> str:
    """Deterministic part name of a clip (clip ids may contain '/', and stray surrogates from odd file names)."""
    return hashlib.sha1(clip_id.encode("utf-8", "surrogateescape")).hexdigest()[:20]


@dataclass(frozen=True)
class StagedPart:
    """A fully written, not yet visible, result of one (clip, extractor).

    ``path``: the staging folder (local Zarr) or the part's group inside ``fork`` (an Icechunk fork session
    the worker wrote into; the writer merges it)."""

    path: str
    extractor: str
    clip_id: str
    rows: int
    fork: object | None = None


def write_part(group: zarr.Group, clip_id: str, values: np.ndarray, times: np.ndarray, dtype: str, clip_record: dict | None) -> int:
    """Fill an empty group with one clip's block; returns its rows.

    The part carries the clip's record too, so a crash before the clips table is
    written loses nothing: the next writer restores the record from the part.
    """
    stored = np.asarray(values, dtype=dtype)
    fill_group(group, {"values": stored, "times": np.asarray(times, dtype="float64").reshape(-1, 2)},
               {"clip_id": clip_id, "rows": int(len(stored)), "checksum": values_checksum(stored), "clip": clip_record or {}},
               PART_COMPRESSORS)
    return int(len(stored))


@dataclass(frozen=True)
class LocalStaging:
    """Where workers put finished blocks of a local (or shared POSIX) Zarr store: ``<store>/.staging/``."""

    store: str

    def stage(self, extractor: str, clip_id: str, values: np.ndarray, times: np.ndarray, dtype: str,
              clip_record: dict | None = None) -> StagedPart:
        """Write one clip's block as a standalone zarr group, invisible to readers until committed (any worker may call this)."""
        path = Path(self.store) / STAGING / uuid.uuid4().hex
        rows = write_part(zarr.open_group(str(path), mode="w"), clip_id, values, times, dtype, clip_record)
        return StagedPart(str(path), extractor, clip_id, rows)

    def reader(self) -> FeatureStore:
        """The store as committed, for a worker that needs earlier results (per-shot features read shots)."""
        return ZarrFeatureStore(self.store)

    def __str__(self) -> str:
        return self.store


class ZarrFeatureStore(FeatureStore):
    """Read access to a Zarr store. Plain zarr can read it too (see the README)."""

    def __init__(self, path: str | Path, mode: str = "r", root: zarr.Group | None = None) -> None:
        """A local Zarr folder, or ``root``: the same layout in another zarr store (an Icechunk session's)."""
        super().__init__(path)
        if root is None:
            if mode == "r" and not (self.path / "zarr.json").exists():
                raise MvfxError(f"{self.location}: not an mvfx store (no zarr.json)")
            root = zarr.open_group(str(self.path), mode=mode)
        self.root = root
        if mode == "r" or "format" in self.root.attrs:
            check_format(self.location, dict(self.root.attrs))

    def store_attrs(self) -> dict:
        return dict(self.root.attrs)

    def extractors(self) -> list[str]:
        if "features" not in self.root:
            return []
        return sorted(name for name, _ in self.root["features"].groups())

    def _feature_group(self, extractor: str) -> zarr.Group:
        try:
            return self.root[f"features/{extractor}"]
        except KeyError:
            raise self._missing(extractor) from None

    def group_attrs(self, extractor: str) -> dict:
        return dict(self._feature_group(extractor).attrs)

    def index_columns(self, extractor: str) -> IndexColumns:
        group = self._feature_group(extractor)
        return read_index_columns(group, dict(group.attrs))

    def parts(self, extractor: str) -> list[tuple[str, dict]]:
        group = self._feature_group(extractor)
        return [(pid, dict(p.attrs)) for pid, p in group["parts"].groups()] if "parts" in group else []

    def read_rows(self, extractor: str, loc: Location) -> tuple[np.ndarray, np.ndarray]:
        group = self._feature_group(extractor)
        if loc.part:
            part = group[f"parts/{loc.part}"]
            return part["values"][:], part["times"][:]
        rows = slice(loc.offset, loc.offset + loc.count)
        return group["values"][rows], group["times"][rows]

    def compacted_rows(self, extractor: str) -> int:
        group = self._feature_group(extractor)
        return group["values"].shape[0] if "values" in group else 0

    def clips_table(self) -> pd.DataFrame:
        if "clips" not in self.root:
            return pd.DataFrame(columns=list(CLIP_COLUMNS))
        return read_zarr_table(self.root["clips"], CLIP_COLUMNS)

    def failures(self) -> pd.DataFrame:
        if "failures" not in self.root:
            return pd.DataFrame(columns=list(FAILURE_COLUMNS))
        return read_zarr_table(self.root["failures"], FAILURE_COLUMNS)


class ZarrStoreWriter(ZarrFeatureStore):
    """The single writer of a store: registers extractors, commits parts, keeps the tables."""

    def __init__(self, path: str | Path, break_lock: bool = False, lock: StoreLock | None = None, root: zarr.Group | None = None) -> None:
        self.lock = lock or StoreLock(Path(path), break_lock=break_lock)
        self.lock.acquire()
        try:
            super().__init__(path, mode="a", root=root)
            self._init_layout()
            self._finish_table_swaps()
            self._load_tables()
            self._migrate()
            self._recover()
        except BaseException:
            self.lock.release()
            raise

    def _load_tables(self) -> None:
        clips = self.clips()
        self._clips = RecordTable(clips, CLIP_COLUMNS, ("clip_id",))
        self._clips.dirty = len(clips) != len(self.clips_table())  # records only parts carried: write them
        self._failures = RecordTable(self.failures(), FAILURE_COLUMNS, ("clip_id", "extractor"))

    def _migrate(self) -> None:
        """Format 1 -> 2: each extractor's JSON clip_index becomes index arrays (once, O(n)). Safe to repeat
        after a crash: the arrays are published before the attribute goes, the store's version last."""
        if self.root.attrs.get("format_version", FORMAT_VERSION) >= 2:
            return
        for name in self.extractors():
            group = self._feature_group(name)
            if INDEXED not in group.attrs:
                create_index_arrays(group)
                append_index(group, 0, IndexColumns.from_legacy(group.attrs.get(LEGACY_INDEX, {})))
            group.attrs.pop(LEGACY_INDEX, None)
        self.root.attrs["format_version"] = FORMAT_VERSION

    def _init_layout(self) -> None:
        if "format" not in self.root.attrs:  # a new store
            self.root.attrs.update(
                {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "mvfx_version": pkg_version("mvfx"), "created": now_iso()}
            )
        self.root.require_group("features")

    def staging(self) -> LocalStaging:
        """Where a worker writes a clip's finished blocks for ``commit``."""
        return LocalStaging(str(self.path))

    def _write_table(self, name: str, columns: dict[str, np.ndarray], schema: dict[str, str]) -> None:
        """Replace the table at group path ``name`` whole. It is written complete under staging, then swapped
        in by two renames, so a full disk or a killed run mid-write leaves the old table, never a torn one: a
        rewrite in place deleted each column before writing it, and a disk that filled there left columns
        of fill values (clip ids all ""). Not a power cut: nothing is fsynced."""
        slot = self.path / STAGING / TABLE_SWAPS / hashlib.sha1(os.fsencode(name)).hexdigest()  # any name fits, checkably
        self._finish_table_swap(slot)  # an earlier swap of this table cut short (Ctrl-C, an error): its table first
        shutil.rmtree(slot, ignore_errors=True)
        # A folder of this attempt's own: requests of an interrupted attempt may still be writing into theirs
        # (Ctrl-C leaves zarr's round running on its loop), and never into this one.
        writing = slot / f"writing-{uuid.uuid4().hex}"
        try:
            slot.mkdir(parents=True, exist_ok=True)
            (slot / "target").write_bytes(os.fsencode(name))
            write_zarr_table(zarr.open_group(str(writing), mode="w"), columns, schema)
        except BaseException:
            shutil.rmtree(slot, ignore_errors=True)
            raise
        writing.rename(slot / "new")  # complete: from here on it is the table
        self._finish_table_swap(slot)
        shutil.rmtree(slot, ignore_errors=True)

    def _finish_table_swaps(self) -> None:
        """Every swap a killed run left between its renames, finished, before the tables are read."""
        swaps = self.path / STAGING / TABLE_SWAPS
        for slot in sorted(swaps.iterdir()) if swaps.is_dir() else []:
            self._finish_table_swap(slot)

    def _finish_table_swap(self, slot: Path) -> None:
        """If ``slot`` holds a complete new table: the table in place moves aside, the new one in."""
        new, named = slot / "new", slot / "target"
        if not new.is_dir() or not named.is_file():  # nothing, or a table still being written: the table in place stands
            return
        path = named.read_bytes()
        if hashlib.sha1(path).hexdigest() != slot.name:  # a damaged name (a power cut): never move anything by it
            return
        target = self.path / os.fsdecode(path)
        if target.exists():
            target.rename(slot / "old")
        new.rename(target)  # killed just before: no table at ``target`` until the next writer opens the store

    def _recover(self) -> None:
        """After a crash: drop staging and the parts a compaction already indexed. (Clip records that only parts
        carry came in with ``clips()``.)"""
        shutil.rmtree(self.path / STAGING, ignore_errors=True)
        for name in self.extractors():
            parts = self.parts(name)
            if not parts:
                continue
            indexed = set(self.index_columns(name).clip_id.tolist())
            self._drop_parts(name, [part_id for part_id, attrs in parts if attrs["clip_id"] in indexed])
        self._index.clear()

    def register_extractor(self, description: dict, dtype: str = "float32") -> None:
        """Create or check ``features/<name>``; refuse a different version or config."""
        name = description["extractor"]
        group = self.root.require_group(f"features/{name}")
        if "version" in group.attrs:
            old = {k: group.attrs.get(k) for k in ("version", "config", "weights", "dim", "feature_names", "dtype")}
            new = {k: description.get(k) for k in ("version", "config", "weights", "dim", "feature_names")} | {"dtype": dtype}
            if old != new:
                diff = ", ".join(f"{k}: {old[k]} -> {new[k]}" for k in old if old[k] != new[k])
                raise MvfxError(f"{self.location}: {name} features here were made differently ({diff}); write to a new store")
            return
        group.require_group("parts")
        create_index_arrays(group)
        group.update_attributes(description | {"dtype": dtype, "created": now_iso(), INDEXED: 0})

    def done(self, extractor: str) -> Container[str]:
        """The clips committed for ``extractor`` (O(1) membership)."""
        return self.index(extractor).keys()

    def commit(self, staged: StagedPart) -> None:
        """Make a staged part visible; a clip already committed is not duplicated."""
        if staged.clip_id in self.index(staged.extractor):
            self._discard(staged)
            return
        self._publish(staged)
        self.index(staged.extractor).add_part(staged.clip_id, Location(staged.rows, part=part_name(staged.clip_id)))
        self._failures.pop((staged.clip_id, staged.extractor))

    def _publish(self, staged: StagedPart) -> None:
        """One atomic rename from staging into the extractor's parts."""
        Path(staged.path).rename(self.path / "features" / staged.extractor / "parts" / part_name(staged.clip_id))

    def _discard(self, staged: StagedPart) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    def source_stamps(self, extractor: str) -> dict[str, str]:
        """clip_id -> stamp (crc32) of the file an import read it from (``features/<extractor>/sources``)."""
        group = self._feature_group(extractor)
        if SOURCES not in group:
            return {}
        table = read_zarr_table(group[SOURCES], SOURCE_COLUMNS)
        return dict(zip(table["clip_id"], table["crc32"]))

    def add_source_stamps(self, extractor: str, stamps: dict[str, str]) -> None:
        """Remember where an import's clips came from, so that importing the same files again skips them."""
        if not stamps:
            return
        merged = self.source_stamps(extractor) | stamps
        columns = {"clip_id": np.array(list(merged), dtype=object), "crc32": np.array(list(merged.values()), dtype=object)}
        self._write_table(f"features/{extractor}/{SOURCES}", columns, SOURCE_COLUMNS)

    def known_clips(self) -> Container[str]:
        """The clips the clips table holds (O(1) membership)."""
        return self._clips

    def clip_records(self) -> RecordTable:
        """clip_id -> record (``.get(clip_id)``), kept as columns: a compact record per clip."""
        return self._clips

    def set_clip(self, record: dict) -> None:
        self._clips.set({k: printable(v) if isinstance(v, str) else v for k, v in record.items()})

    def clear_failures(self, clip_id: str, extractors: list[str]) -> None:
        """Forget earlier failures of a clip that is being retried (whole-clip ones included)."""
        for name in [*extractors, "*"]:
            self._failures.pop((clip_id, name))

    def add_failure(self, clip_id: str, extractor: str, stage: str, error: str, message: str) -> None:
        """One row per (clip, extractor): the latest failure, its message cut to one line of at most 500 characters."""
        line = printable(message).strip().splitlines()[0] if message.strip() else ""
        self._failures.set({
            "clip_id": printable(clip_id), "extractor": extractor, "stage": stage, "error": error,
            "message": line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "...", "time": now_iso(),
        })

    def checkpoint(self) -> None:
        """Persist the clips and failures tables where they changed (columns rewritten whole: at 100k clips
        about 0.2 s, paid at most once per ``commit_every_s``)."""
        self._write_tables()

    def _write_tables(self) -> None:
        written = False
        for name, table in (("clips", self._clips), ("failures", self._failures)):
            if table.dirty or name not in self.root:
                self._write_table(name, table.columns(), table.schema)
                table.dirty, written = False, True
        if written:  # an unchanged store stays unchanged (on Icechunk, no empty commit at close)
            self.root.attrs["updated"] = now_iso()

    def compact(self) -> int:
        """Move every part into the contiguous arrays; returns the number of parts compacted."""
        self.checkpoint()  # clip records must be in the table before the parts that also hold them go
        return self._compact_parts()

    def _compact_parts(self) -> int:
        moved = 0
        for name in self.extractors():
            parts = sorted((attrs["clip_id"], pid) for pid, attrs in self.parts(name))
            index = self.index(name)
            fresh = [(clip_id, pid) for clip_id, pid in parts if index[clip_id].part == pid]  # a leftover of a compacted clip goes
            for start in range(0, len(fresh), COMPACT_BATCH):
                batch = fresh[start : start + COMPACT_BATCH]
                self._append_rows(name, [clip_id for clip_id, _ in batch], self._read_parts(name, [pid for _, pid in batch]))
            self._drop_parts(name, [pid for _, pid in parts])
            moved += len(parts)
        self._index.clear()
        return moved

    def append(self, extractor: str, clips: list[tuple[str, np.ndarray, np.ndarray]]) -> int:
        """Write whole clips (clip id, values, times) straight into the compacted arrays, ``COMPACT_BATCH`` at a
        time, each batch published as a compaction's is; clips already committed stay as they are. For the
        writer that holds the data itself (an import): nothing is staged. Returns the clips written."""
        index = self.index(extractor)
        fresh = [clip for clip in clips if clip[0] not in index]
        for start in range(0, len(fresh), COMPACT_BATCH):
            batch = fresh[start : start + COMPACT_BATCH]
            self._append_rows(extractor, [clip_id for clip_id, _, _ in batch], [(v, t, "") for _, v, t in batch])
        return len(fresh)

    def _append_rows(self, name: str, clip_ids: list[str], blocks: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
        """Append blocks (values, times, checksum or "") after the compacted rows, then publish their index rows
        (the commit point); the in-memory index follows. O(batch): only the arrays' last chunks are rewritten."""
        group = self._feature_group(name)
        index = self.index(name)
        count, end = int(group.attrs.get(INDEXED, 0)), index.compacted_end()
        dim, dtype = int(group.attrs["dim"]), group.attrs["dtype"]
        if "values" not in group:
            group.create_array("values", shape=(0, dim), dtype=dtype, chunks=(chunk_rows(dim, np.dtype(dtype).itemsize), dim),
                               compressors=FEATURE_COMPRESSORS)
            group.create_array("times", shape=(0, 2), dtype="float64", chunks=(chunk_rows(2, 8), 2), compressors=FEATURE_COMPRESSORS)
        stored = [np.asarray(v, dtype=dtype) for v, _, _ in blocks]
        wrong = next((c for c, v in zip(clip_ids, stored) if v.ndim != 2 or v.shape[1] != dim), None)
        if wrong is not None:
            raise MvfxError(f"{self.location}: {name} rows of clip {wrong!r} are not {dim} wide")
        rows = [len(v) for v in stored]
        data = [("values", end, np.concatenate(stored) if stored else np.empty((0, dim), dtype)),
                ("times", end, np.concatenate([np.asarray(t, dtype="float64").reshape(-1, 2) for _, t, _ in blocks] or [np.empty((0, 2))]))]
        offsets = end + np.concatenate([[0], np.cumsum(rows)[:-1]]) if rows else []
        checksums = [checksum or values_checksum(v) for v, (_, _, checksum) in zip(stored, blocks)]
        columns = IndexColumns.from_lists(clip_ids, offsets, rows, checksums)
        append_index(group, count, columns, data)
        index.extend(columns)

    def _read_parts(self, extractor: str, part_ids: list[str]) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """(values, times, checksum) of each part."""
        parts = read_groups(self.root[f"features/{extractor}/parts"], part_ids, ("values", "times"))
        return [(values, times, attrs.get("checksum", "")) for attrs, (values, times) in parts]

    def _drop_parts(self, extractor: str, part_ids: list[str]) -> None:
        delete_members(self.root[f"features/{extractor}/parts"], part_ids)

    def close(self) -> None:
        """Persist the tables and release the lock. On a full or read-only file system the tables are
        skipped (the committed parts carry their clip records; the next writer restores them)."""
        try:
            self.checkpoint()
        except OSError as exc:
            if not is_unwritable(exc):
                raise
        finally:
            self.lock.release()

    def __enter__(self) -> ZarrStoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
