"""Column tables (clips, failures) stored as one 1-D array per column, and the writer's in-memory copy of them."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

import numpy as np
import pandas as pd
import zarr

from mvfx.stores.zarr_async import fill_group


def to_columns(records: list[dict], schema: dict[str, str]) -> dict[str, np.ndarray]:
    """Records -> column arrays with the schema's dtypes (strings as Python str objects)."""
    cols = {}
    for name, dtype in schema.items():
        empty = "" if dtype == "str" else 0
        values = [empty if _missing(r.get(name)) else r[name] for r in records]
        cols[name] = np.array(values, dtype=object if dtype == "str" else dtype)
    return cols


def frame_columns(frame: pd.DataFrame, schema: dict[str, str]) -> dict[str, np.ndarray]:
    """A table read by ``to_frame`` -> column arrays as ``to_columns`` makes them."""
    return {name: frame[name].to_numpy(dtype=object if dtype == "str" else dtype) for name, dtype in schema.items()}


def _missing(value) -> bool:
    """Absent, None or NaN: a column that older rows do not have (e.g. one added in a later format)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def write_zarr_table(group: zarr.Group, columns: dict[str, np.ndarray], schema: dict[str, str]) -> None:
    """Replace every column array of ``group``, each one chunk, all in one round of concurrent requests. One by one,
    zarr's calls took the clips table's 18 columns 59 ms a write on an idle machine (47 ms in a round), and far more
    while clips run beside them, at every checkpoint and at the end. A column of fill values has no chunk file."""
    fill_group(group, columns, {"columns": list(schema)}, compressors="auto", overwrite=True, write_empty_chunks=False,
               dtypes={name: str for name in columns if schema[name] == "str"})


def to_frame(columns: dict[str, np.ndarray], schema: dict[str, str]) -> pd.DataFrame:
    """A table with the schema's column order and dtypes, whichever backend it came from."""
    return pd.DataFrame(
        {name: pd.Series(columns.get(name, []), dtype="str" if dtype == "str" else dtype) for name, dtype in schema.items()}
    )


def read_zarr_table(group: zarr.Group, schema: dict[str, str]) -> pd.DataFrame:
    """The table; if its columns differ in length, the rows every column has. (Writers before 2026-12-08 rewrote a
    local store's tables in place, column by column, and a full disk could stop them between two; tables are now
    swapped in whole, ``ZarrStoreWriter._write_table``. What that drops of a clip still in a part comes back from
    the part.)"""
    columns = {n: group[n][:] for n in schema if n in group}
    rows = min((len(column) for column in columns.values()), default=0)
    return to_frame({n: column[:rows] for n, column in columns.items()}, schema)


class RecordTable:
    """A writer's copy of a table, keyed by some of its columns: the stored rows as column arrays, and the
    records this run set or removed on top.

    Why not a dict of dicts: at 100k clips that is about 1.5 KB a clip on the run's client; columns take a
    few hundred bytes. ``columns()`` folds the changes in (sorted by key) when the table is written."""

    def __init__(self, frame: pd.DataFrame, schema: dict[str, str], key: tuple[str, ...]) -> None:
        self.schema, self.key = schema, key
        self._load(frame_columns(frame, schema))
        self.dirty = False  # set by a change; cleared by the writer once the table is written

    def _load(self, columns: dict[str, np.ndarray]) -> None:
        self._columns = columns
        self._rows = {k: i for i, k in enumerate(self._keys(columns))}
        self._changed: dict[Hashable, dict] = {}
        self._dropped: set[Hashable] = set()

    def _keys(self, columns: dict[str, np.ndarray]) -> list[Hashable]:
        if len(self.key) == 1:
            return columns[self.key[0]].tolist()
        return list(zip(*(columns[k].tolist() for k in self.key)))

    def key_of(self, record: dict) -> Hashable:
        return record[self.key[0]] if len(self.key) == 1 else tuple(record[k] for k in self.key)

    def get(self, key: Hashable, default: dict | None = None) -> dict | None:
        """The record under ``key`` (a fresh dict of Python values), or ``default``."""
        if key in self._changed:
            return dict(self._changed[key])
        row = self._rows.get(key)
        if row is None or key in self._dropped:
            return default
        return {name: column[row].item() if isinstance(column[row], np.generic) else column[row]
                for name, column in self._columns.items()}

    def __contains__(self, key: object) -> bool:
        return key in self._changed or (key in self._rows and key not in self._dropped)

    def keys(self) -> Iterator[Hashable]:
        yield from (k for k in self._rows if k not in self._changed and k not in self._dropped)
        yield from self._changed

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def set(self, record: dict) -> None:
        key = self.key_of(record)
        self._changed[key] = record
        self._dropped.discard(key)
        self.dirty = True

    def pop(self, key: Hashable) -> None:
        if key in self:
            self._changed.pop(key, None)
            self._dropped.add(key)
            self.dirty = True

    def columns(self) -> dict[str, np.ndarray]:
        """Every record as column arrays sorted by key; the changes become the stored rows (still ``dirty``:
        folding them is not writing them)."""
        keep = np.array([k not in self._changed and k not in self._dropped for k in self._rows], dtype=bool)
        fresh = to_columns(list(self._changed.values()), self.schema)
        merged = {n: np.concatenate([self._columns[n][keep], fresh[n]]) for n in self.schema}
        order = sorted(range(len(keep.nonzero()[0]) + len(self._changed)), key=self._keys(merged).__getitem__)
        self._load({n: column[order] for n, column in merged.items()})
        return self._columns

    def rebase(self, frame: pd.DataFrame, ours: Callable[[Hashable], bool]) -> None:
        """Take ``frame`` (another writer's newer table) as the stored rows, keeping this run's own records
        (the keys ``ours`` claims) in place of its rows."""
        kept = [self.get(k) for k in self.keys() if ours(k)]
        tip = frame_columns(frame, self.schema)
        mask = np.array([not ours(k) for k in self._keys(tip)], dtype=bool)
        self._load({n: column[mask] if len(mask) else column for n, column in tip.items()})
        self.dirty = False
        for record in kept:
            self.set(record)
