"""The read API every store backend shares, and the checks of ``mvfx store verify``.

A backend supplies attributes, the list of uncompacted parts, row reads and
the two tables; the index, clip lists, reads by clip, the summary and the
verification are written once here.
"""
from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Container, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.stores.index import INDEXED, LEGACY_INDEX, ClipIndex, IndexColumns, Location
from mvfx.stores.layout import CLIP_COLUMNS, FORMAT_NAME, FORMAT_VERSION
from mvfx.stores.tables import to_columns, to_frame

if TYPE_CHECKING:
    from mvfx.stores.lock import StoreLock

VERIFY_SLAB_ROWS = 1 << 16  # compacted rows verified per read
READ_BATCH = 256  # clips read_many reads together
READ_GAP_ROWS = 4096  # rows a batch's span may hold beyond twice its own and still be read in one go


def values_checksum(values: np.ndarray) -> str:
    """crc32 of the stored bytes of one clip's values (catches bit rot and torn writes)."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(values).tobytes()):08x}"


def check_format(path: str | Path, attrs: dict) -> None:
    fmt = attrs.get("format")
    if fmt != FORMAT_NAME:
        raise MvfxError(f"{path}: not an mvfx store (format {fmt!r})")
    if attrs.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise MvfxError(f"{path}: store format {attrs['format_version']} is newer than this mvfx reads")


class Staging(Protocol):
    """Where a worker writes one clip's finished block before the store's writer commits it (``writer.staging()``)."""

    def stage(self, extractor: str, clip_id: str, values: np.ndarray, times: np.ndarray, dtype: str,
              clip_record: dict | None = None): ...

    def reader(self) -> FeatureStore:
        """The store as committed, for workers that need earlier results."""


@runtime_checkable
class StoreWriter(Protocol):
    """The single writer of a store (``open_writer``): what a run and an import call. Workers never hold one;
    they stage through ``staging()`` and the writer commits. See ``ZarrStoreWriter`` for the local protocol
    and ``IcechunkStoreWriter`` for transactions."""

    location: str
    lock: StoreLock  # took_over: a note when this run took over a crashed run's lock

    def extractors(self) -> list[str]: ...

    def read(self, extractor: str, clip_id: str) -> tuple[np.ndarray, np.ndarray]: ...

    def register_extractor(self, description: dict, dtype: str = "float32") -> None:
        """Create or check ``features/<name>``; refuse a feature set made differently."""

    def staging(self) -> Staging:
        """Where a worker writes a clip's finished blocks for ``commit``."""

    def done(self, extractor: str) -> Container[str]:
        """The clips committed for ``extractor`` (O(1) membership)."""

    def commit(self, staged) -> None:
        """Make a staged part visible; a clip already committed is not duplicated."""

    def append(self, extractor: str, clips: list[tuple[str, np.ndarray, np.ndarray]]) -> int:
        """Write whole clips held in memory straight into the store; returns the clips written."""

    def source_stamps(self, extractor: str) -> dict[str, str]:
        """clip_id -> stamp of the file an import read it from."""

    def add_source_stamps(self, extractor: str, stamps: dict[str, str]) -> None: ...

    def set_clip(self, record: dict) -> None: ...

    def known_clips(self) -> Container[str]: ...

    def clip_records(self): ...

    def add_failure(self, clip_id: str, extractor: str, stage: str, error: str, message: str) -> None: ...

    def clear_failures(self, clip_id: str, extractors: list[str]) -> None: ...

    def checkpoint(self) -> None:
        """Persist the tables (and, with history, commit)."""

    def compact(self) -> int:
        """Fold committed parts into the contiguous arrays; returns how many."""

    def close(self) -> None:
        """Persist and release the store."""

    def __enter__(self) -> StoreWriter: ...

    def __exit__(self, *exc) -> None: ...


class FeatureStore(ABC):
    """Read access to an mvfx store, whatever the file format."""

    def __init__(self, path: str | Path) -> None:
        self.location = str(path)  # as the user named it: a path, or a URL such as s3://bucket/prefix
        self.path = Path(path)
        self.commit_id: str | None = None  # the commit read, for stores that keep history (Icechunk)
        self._index: dict[str, ClipIndex] = {}

    def reference(self) -> dict[str, str | None]:
        """How a run names the features it used: the store, and the exact commit where there is one."""
        return {"store": self.location, "store_commit": self.commit_id}

    # --- what a backend provides -------------------------------------------------
    @abstractmethod
    def store_attrs(self) -> dict: ...

    @abstractmethod
    def extractors(self) -> list[str]: ...

    @abstractmethod
    def group_attrs(self, extractor: str) -> dict:
        """Every attribute of ``features/<extractor>``, the index's (``indexed_clips``, format 1's clip_index) included."""

    @abstractmethod
    def index_columns(self, extractor: str) -> IndexColumns:
        """The committed index of the compacted clips (``stores.index``)."""

    @abstractmethod
    def parts(self, extractor: str) -> list[tuple[str, dict]]:
        """(part id, part attrs) of committed, uncompacted parts."""

    @abstractmethod
    def read_rows(self, extractor: str, loc: Location) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def compacted_rows(self, extractor: str) -> int: ...

    @abstractmethod
    def clips_table(self) -> pd.DataFrame:
        """The clips table as stored."""

    @abstractmethod
    def failures(self) -> pd.DataFrame: ...

    # --- shared ------------------------------------------------------------------
    def _missing(self, extractor: str) -> MvfxError:
        present = ", ".join(self.extractors()) or "none"
        return MvfxError(f"{self.location}: no features for extractor {extractor!r}; present: {present}")

    def attrs(self, extractor: str) -> dict:
        """Provenance of an extractor's features (without the clip index)."""
        return {k: v for k, v in self.group_attrs(extractor).items() if k not in (LEGACY_INDEX, INDEXED)}

    def index(self, extractor: str) -> ClipIndex:
        """clip_id -> Location for every committed clip of an extractor (read once, then kept)."""
        if extractor not in self._index:
            parts = {attrs["clip_id"]: Location(int(attrs["rows"]), part=part_id, checksum=attrs.get("checksum", ""))
                     for part_id, attrs in self.parts(extractor)}
            self._index[extractor] = ClipIndex(self.index_columns(extractor), parts)
        return self._index[extractor]

    def clips(self) -> pd.DataFrame:
        """The clips table, plus the records that committed parts carry: a run stopped (a crash, a full disk)
        after committing a clip but before rewriting the table loses nothing, for readers and writers alike."""
        table = self.clips_table()
        carried: dict[str, dict] = {}
        for name in self.extractors():
            for _, attrs in self.parts(name):
                if attrs.get("clip") and attrs["clip_id"] not in carried:
                    carried[attrs["clip_id"]] = {"status": "ok", **attrs["clip"]}
        listed = set(table["clip_id"])
        missing = [record for clip_id, record in sorted(carried.items()) if clip_id not in listed]
        if not missing:
            return table
        return pd.concat([table, to_frame(to_columns(missing, CLIP_COLUMNS), CLIP_COLUMNS)], ignore_index=True)

    def clip_ids(self, extractor: str | None = None) -> list[str]:
        """Clips in the clips table, or those with committed features of ``extractor``."""
        if extractor is not None:
            return sorted(self.index(extractor))
        return sorted(self.clips()["clip_id"].tolist())

    def read(self, extractor: str, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(values [T, D], times [T, 2]) of one clip."""
        loc = self.index(extractor).get(clip_id)
        if loc is None:
            raise MvfxError(f"{self.location}: no {extractor} features for clip {clip_id!r}")
        return self.read_rows(extractor, loc)

    def read_many(self, extractor: str, clip_ids: Iterable[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(values, times) of each clip of ``clip_ids``, in that order, read ``READ_BATCH`` clips at a time: where a
        batch's compacted rows lie close together (a compaction writes clips in id order), one read of the span
        serves them all, so streaming a store costs a read per batch, not per clip (about 3 ms each)."""
        index = self.index(extractor)
        ids = iter(clip_ids)
        while batch := list(islice(ids, READ_BATCH)):
            missing = next((c for c in batch if c not in index), None)
            if missing is not None:
                raise MvfxError(f"{self.location}: no {extractor} features for clip {missing!r}")
            locs = [index[c] for c in batch]
            compacted = [loc for loc in locs if not loc.part]
            span = None
            if compacted:
                start = min(loc.offset for loc in compacted)
                stop = max(loc.offset + loc.count for loc in compacted)
                if stop - start <= 2 * sum(loc.count for loc in compacted) + READ_GAP_ROWS:  # dense enough to read whole
                    span = start, *self.read_rows(extractor, Location(stop - start, offset=start))
            for loc in locs:
                if loc.part or span is None:
                    yield self.read_rows(extractor, loc)
                else:
                    at = slice(loc.offset - span[0], loc.offset + loc.count - span[0])
                    yield span[1][at], span[2][at]

    def summary(self) -> dict:
        """The numbers `mvfx store info --json` prints."""
        extractors = {}
        for name in self.extractors():
            index, attrs = self.index(name), self.attrs(name)
            extractors[name] = {
                "dim": attrs["dim"],
                "version": attrs["version"],
                "clips": len(index),
                "rows": index.rows(),
                "weights": attrs.get("weights", "none"),
                "uncompacted_parts": len(index.parts),
            }
        clips = self.clips()
        damaged = pd.to_numeric(clips.get("damaged_packets", pd.Series(dtype=float)), errors="coerce").fillna(0)
        return {"clips": len(clips), "extractors": extractors, "failures": len(self.failures()),
                "damaged_clips": int((damaged > 0).sum())}

    def verify(self) -> list[str]:
        """Every problem found: dim 0, index vs arrays, shapes, time order, NaN (unless allowed), Inf (always), checksums, clips table.

        Compacted rows are read in slabs of whole chunks, not clip by clip, so a store of 100k small clips
        verifies at thousands of clips a second."""
        problems = []
        known = set(self.clips()["clip_id"])
        for name in self.extractors():
            attrs = self.group_attrs(name)
            if attrs.get("dim") == 0:
                problems.append(f"{name}: dim 0, a feature set without features")
            try:
                columns = self.index_columns(name)
            except Exception as exc:  # an unreadable index is what verify must report
                problems.append(f"{name}: index unreadable ({type(exc).__name__}: {exc})")
                continue
            lengths = columns.lengths()
            if len(set(lengths.values())) > 1:
                problems.append(f"{name}: index columns differ in length {lengths}")
                continue
            problems += [f"{name}: {p}" for p in self._verify_spans(name, columns)]
            index = self.index(name)
            problems += [f"{name}/{c}: {p}" for c, p in self._verify_compacted(name, attrs, index)]
            for clip_id, loc in index.parts.items():
                problems.extend(f"{name}/{clip_id}: {p}" for p in self._verify_clip(attrs, loc, *self._read_or_none(name, loc)))
            problems += [f"{name}/{c}: clip missing from the clips table" for c in index if c not in known]
        return problems

    def _verify_spans(self, name: str, columns: IndexColumns) -> list[str]:
        """Clips listed twice, rows shared by two clips, rows past the stored arrays."""
        problems = []
        if len(set(columns.clip_id.tolist())) != len(columns):
            problems.append("a clip appears twice in the index")
        order = np.argsort(columns.offset, kind="stable")
        offset, count, ids = columns.offset[order], columns.count[order], columns.clip_id[order]
        ends = offset + count
        previous_end = np.maximum.accumulate(np.concatenate([[0], ends[:-1]])) if len(ends) else ends
        rows = self.compacted_rows(name)
        for i in np.flatnonzero(offset < previous_end):
            problems.append(f"{ids[i]}: rows [{offset[i]}, {ends[i]}) overlap another clip")
        for i in np.flatnonzero(ends > rows):
            problems.append(f"{ids[i]}: rows [{offset[i]}, {ends[i]}) beyond the {rows} stored rows")
        return problems

    def _verify_compacted(self, name: str, attrs: dict, index: ClipIndex) -> list[tuple[str, str]]:
        """(clip, problem) for the compacted clips, read in slabs of about VERIFY_SLAB_ROWS rows."""
        ids, offsets, counts = index.compacted()
        ends = np.maximum.accumulate(offsets + counts) if len(ids) else offsets
        problems: list[tuple[str, str]] = []
        first = 0
        while first < len(ids):
            last = max(first + 1, int(np.searchsorted(ends, offsets[first] + VERIFY_SLAB_ROWS, side="right")))
            start, stop = int(offsets[first]), int(ends[last - 1])
            values, times = self._read_or_none(name, Location(stop - start, offset=start))
            for k in range(first, last):
                loc = index[ids[k]]
                at = slice(loc.offset - start, loc.offset + loc.count - start)
                block = self._read_or_none(name, loc) if values is None else (values[at], times[at])  # unreadable: name each clip
                problems += [(ids[k], p) for p in self._verify_clip(attrs, loc, *block)]
            first = last
        return problems

    def _read_or_none(self, name: str, loc: Location) -> tuple[np.ndarray | None, np.ndarray | Exception]:
        try:
            return self.read_rows(name, loc)
        except Exception as exc:  # an unreadable chunk is exactly what verify must report
            return None, exc

    @staticmethod
    def _verify_clip(attrs: dict, loc: Location, values: np.ndarray | None, times: np.ndarray | Exception) -> list[str]:
        if values is None:
            return [f"unreadable ({type(times).__name__}: {times})"]
        problems = []
        if values.shape != (loc.count, attrs["dim"]) or times.shape != (loc.count, 2):
            problems.append(f"shapes values {values.shape}, times {times.shape}; expected ({loc.count}, {attrs['dim']})")
            return problems
        if not np.isfinite(times).all() or np.any(times[:, 1] < times[:, 0]) or np.any(np.diff(times[:, 0]) < 0):
            problems.append("times are not finite, not increasing, or end before they start")
        if not attrs.get("nan_allowed", False) and np.isnan(values).any():
            problems.append("values hold NaN")
        if np.isinf(values).any():  # nan_allowed allows missing values, never infinite ones
            problems.append(f"values hold Inf ({int(np.isinf(values).sum())} cells)")
        if loc.checksum and values_checksum(values) != loc.checksum:
            problems.append(f"checksum {values_checksum(values)} differs from the recorded {loc.checksum}")
        return problems
