"""Where each clip's rows are: the per-extractor clip index, stored as appendable arrays (format 2).

    features/<extractor>/index/clip_id   [n] str     attrs of features/<extractor>: indexed_clips = N
                             offset    [n] int64   (the commit point: rows beyond N are ignored)
                             count     [n] int64
                             checksum  [n] str     "crc32:xxxxxxxx" of the clip's stored values

Why arrays: format 1 kept the index as one JSON attribute, so every compaction batch rewrote the whole
index (and every reader parsed it as Python lists). Now a batch appends its rows to the arrays (touching
only the last chunk) and publishes them with one atomic write of the group's ``zarr.json``
(``indexed_clips``); a crash between the two leaves rows past N that the next batch overwrites.

In memory, ``ClipIndex`` keeps the columns as numpy arrays and one dict from clip id to row: about 200
bytes a clip, where a dict of Location objects took about three times that.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import zarr

from mvfx.stores.zarr_async import grow_arrays

INDEX_GROUP = "index"
INDEXED = "indexed_clips"  # attribute of features/<extractor>: how many index rows are committed
LEGACY_INDEX = "clip_index"  # format 1: the whole index as one JSON attribute
INDEX_CHUNK = 4096
COLUMNS = ("clip_id", "offset", "count", "checksum")


@dataclass(frozen=True)
class Location:
    """Where one clip's rows live: compacted rows [offset, offset+count) or a part group."""

    count: int
    offset: int = -1
    part: str = ""
    checksum: str = ""


@dataclass(frozen=True)
class IndexColumns:
    """The committed index of one extractor as arrays (the on-disk columns, in commit order)."""

    clip_id: np.ndarray  # object (str)
    offset: np.ndarray  # int64
    count: np.ndarray  # int64
    checksum: np.ndarray  # object (str); "" where a format-1 store recorded none

    @classmethod
    def empty(cls) -> IndexColumns:
        return cls(np.array([], dtype=object), np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([], dtype=object))

    @classmethod
    def from_lists(cls, clip_id: list, offset: list, count: list, checksum: list) -> IndexColumns:
        n = len(clip_id)
        return cls(np.array(clip_id, dtype=object).reshape(n), np.asarray(offset, np.int64).reshape(n),
                   np.asarray(count, np.int64).reshape(n), np.array(checksum or [""] * n, dtype=object).reshape(n))

    @classmethod
    def from_legacy(cls, attr: dict) -> IndexColumns:
        """A format-1 ``clip_index`` attribute ({clip_id: [...], offset: [...], count: [...], checksum: [...]})."""
        return cls.from_lists(*(list(attr.get(k, [])) for k in COLUMNS))

    def __len__(self) -> int:
        return len(self.clip_id)

    def lengths(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in COLUMNS}


def read_index_columns(group: zarr.Group | None, attrs: dict) -> IndexColumns:
    """The committed index of an extractor group: format 2 arrays (the first ``indexed_clips`` rows), else
    format 1's attribute."""
    if INDEXED in attrs:
        n = int(attrs[INDEXED])
        if n == 0 or group is None:
            return IndexColumns.empty()
        index = group[INDEX_GROUP]
        return IndexColumns(*(np.asarray(index[k][:n], dtype=object if k in ("clip_id", "checksum") else np.int64)
                              for k in COLUMNS))
    return IndexColumns.from_legacy(attrs.get(LEGACY_INDEX, {}))


def create_index_arrays(group: zarr.Group) -> None:
    """Empty index arrays in an extractor group (a new group, or one migrated from format 1)."""
    index = group.require_group(INDEX_GROUP)
    for name in COLUMNS:
        dtype = str if name in ("clip_id", "checksum") else "int64"
        index.create_array(name, shape=(0,), dtype=dtype, chunks=(INDEX_CHUNK,), overwrite=True)


def append_index(group: zarr.Group, n: int, rows: IndexColumns, data: Sequence[tuple[str, int, np.ndarray]] = ()) -> int:
    """Write ``rows`` after the ``n`` committed index rows, with ``data`` (more appends to arrays of ``group``,
    as ``grow_arrays`` takes them: the clips' values and times) in the same round, then publish them (one
    atomic ``zarr.json`` write of ``group``); returns the new count. Touches only the chunks the new rows fall in."""
    columns = [(f"{INDEX_GROUP}/{name}", n, getattr(rows, name)) for name in COLUMNS]
    grow_arrays(group, [*data, *columns])  # resizing also drops rows a crashed batch left past n
    total = n + len(rows)
    group.attrs[INDEXED] = total  # the commit point
    return total


def _crcs(checksums: np.ndarray) -> np.ndarray:
    """"crc32:xxxxxxxx" strings -> their numbers (-1: none recorded), 8 bytes a clip instead of a string."""
    return np.array([int(text[6:], 16) if text else -1 for text in checksums.tolist()], dtype=np.int64)


class ClipIndex(Mapping[str, Location]):
    """clip_id -> Location of one extractor: the compacted clips (arrays) plus committed, uncompacted parts.

    Membership and lookup are O(1); a lookup builds its Location on demand. The compacted columns are kept
    sorted by offset so that verification and export can walk the rows in order."""

    def __init__(self, columns: IndexColumns, parts: dict[str, Location] | None = None) -> None:
        order = np.argsort(columns.offset, kind="stable")
        self._ids = columns.clip_id[order]
        self._offset = columns.offset[order]
        self._count = columns.count[order]
        self._crc = _crcs(columns.checksum[order])
        self._row = {c: i for i, c in enumerate(self._ids.tolist())}
        self._parts: dict[str, Location] = {}
        for clip_id, loc in (parts or {}).items():
            self.add_part(clip_id, loc)

    def extend(self, columns: IndexColumns) -> None:
        """Clips just compacted after every other (their parts, if any, are gone)."""
        first = len(self._ids)
        self._ids = np.concatenate([self._ids, columns.clip_id])
        self._offset = np.concatenate([self._offset, columns.offset])
        self._count = np.concatenate([self._count, columns.count])
        self._crc = np.concatenate([self._crc, _crcs(columns.checksum)])
        for i, clip_id in enumerate(columns.clip_id.tolist(), start=first):
            self._row[clip_id] = i
            self._parts.pop(clip_id, None)

    def add_part(self, clip_id: str, loc: Location) -> None:
        """A committed part; a clip already compacted keeps its compacted rows (the part is a leftover)."""
        if clip_id not in self._row:
            self._parts.setdefault(clip_id, loc)

    def __getitem__(self, clip_id: str) -> Location:
        row = self._row.get(clip_id)
        if row is None:
            return self._parts[clip_id]
        crc = int(self._crc[row])
        return Location(int(self._count[row]), offset=int(self._offset[row]), checksum=f"crc32:{crc:08x}" if crc >= 0 else "")

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._row or clip_id in self._parts

    def __iter__(self) -> Iterator[str]:
        yield from self._row
        yield from self._parts

    def __len__(self) -> int:
        return len(self._row) + len(self._parts)

    @property
    def parts(self) -> dict[str, Location]:
        return dict(self._parts)

    def rows(self) -> int:
        """Rows of every clip, compacted and in parts."""
        return int(self._count.sum()) + sum(loc.count for loc in self._parts.values())

    def compacted_end(self) -> int:
        """One past the last compacted row (where a compaction appends)."""
        return int((self._offset + self._count).max()) if len(self._ids) else 0

    def compacted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clip ids, offsets, counts) of the compacted clips, in row order."""
        return self._ids, self._offset, self._count
