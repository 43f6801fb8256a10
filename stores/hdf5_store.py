"""HDF5 backend (single-file exchange): the same hierarchy, read with the shared API.

h5py attributes hold scalars, strings and arrays; nested values (config,
time_grid, ...) are stored as JSON strings, and each object's
``_json_attrs`` attribute lists which ones, so a round trip restores every
attribute exactly. Lists of strings (feature_names) stay native arrays. The
clip index is datasets under ``features/<extractor>/index/`` as in Zarr
(format 1 files kept it as the JSON attribute ``clip_index``; still read).
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore, check_format
from mvfx.stores.index import COLUMNS, INDEX_GROUP, IndexColumns, Location, read_index_columns
from mvfx.stores.layout import CLIP_COLUMNS, FAILURE_COLUMNS
from mvfx.stores.tables import to_frame

JSON_ATTRS = "_json_attrs"


def encode_attrs(attrs: dict) -> dict:
    """Attributes as h5py can hold them (see the module docstring)."""
    out, as_json = {}, []
    for key, value in attrs.items():
        if isinstance(value, (str, bool, float)) or (isinstance(value, int) and abs(value) < 2**62):
            out[key] = value
        elif isinstance(value, list) and value and all(isinstance(x, str) for x in value):
            out[key] = np.array(value, dtype=h5py.string_dtype())
        else:
            out[key] = json.dumps(value)
            as_json.append(key)
    out[JSON_ATTRS] = json.dumps(as_json)
    return out


def decode_attrs(h5attrs) -> dict:
    as_json = set(json.loads(h5attrs.get(JSON_ATTRS, "[]")))
    out = {}
    for key, value in h5attrs.items():
        if key == JSON_ATTRS:
            continue
        if key in as_json:
            out[key] = json.loads(value)
        elif isinstance(value, np.ndarray):
            out[key] = [x.decode() if isinstance(x, bytes) else str(x) for x in value.tolist()]
        elif isinstance(value, np.generic):
            out[key] = value.item()
        else:
            out[key] = value
    return out


def write_h5_table(group: h5py.Group, table: pd.DataFrame, schema: dict[str, str]) -> None:
    for name, dtype in schema.items():
        column = table[name] if name in table else pd.Series([], dtype=object)
        if dtype == "str":
            group.create_dataset(name, data=np.array(column.astype(str).tolist(), dtype=h5py.string_dtype()))
        else:
            group.create_dataset(name, data=column.to_numpy(dtype=dtype))
    group.attrs["columns"] = np.array(list(schema), dtype=h5py.string_dtype())


def write_h5_index(group: h5py.Group, columns: IndexColumns) -> None:
    index = group.create_group(INDEX_GROUP)
    for name in COLUMNS:
        column = getattr(columns, name)
        text = column.dtype == object
        index.create_dataset(name, data=np.array(column.tolist(), dtype=h5py.string_dtype()) if text else column)


def read_h5_table(group: h5py.Group, schema: dict[str, str]) -> pd.DataFrame:
    return to_frame({n: group[n].asstr()[:] if schema[n] == "str" else group[n][:] for n in schema if n in group}, schema)


class Hdf5FeatureStore(FeatureStore):
    """Read access to an exported single-file store."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as exc:
            raise MvfxError(f"{self.path}: cannot open as HDF5 ({exc})") from None
        check_format(self.path, self.store_attrs())
        self._attrs: dict[str, dict] = {}

    def store_attrs(self) -> dict:
        return decode_attrs(self.file.attrs)

    def extractors(self) -> list[str]:
        return sorted(self.file["features"].keys()) if "features" in self.file else []

    def group_attrs(self, extractor: str) -> dict:
        if extractor not in self._attrs:
            if f"features/{extractor}" not in self.file:
                raise self._missing(extractor)
            self._attrs[extractor] = decode_attrs(self.file[f"features/{extractor}"].attrs)
        return self._attrs[extractor]

    def index_columns(self, extractor: str) -> IndexColumns:
        group = self.file[f"features/{extractor}"]
        return read_index_columns(_H5Index(group) if INDEX_GROUP in group else None, self.group_attrs(extractor))

    def parts(self, extractor: str) -> list[tuple[str, dict]]:
        return []

    def read_rows(self, extractor: str, loc: Location) -> tuple[np.ndarray, np.ndarray]:
        group = self.file[f"features/{extractor}"]
        rows = slice(loc.offset, loc.offset + loc.count)
        return group["values"][rows], group["times"][rows]

    def compacted_rows(self, extractor: str) -> int:
        return self.file[f"features/{extractor}/values"].shape[0]

    def clips_table(self) -> pd.DataFrame:
        return read_h5_table(self.file["clips"], CLIP_COLUMNS)

    def failures(self) -> pd.DataFrame:
        return read_h5_table(self.file["failures"], FAILURE_COLUMNS)

    def close(self) -> None:
        self.file.close()


class _H5Index:
    """An HDF5 group read like a zarr group by ``read_index_columns`` (string datasets come back as str)."""

    def __init__(self, group: h5py.Group) -> None:
        self.group = group

    def __getitem__(self, key: str):
        item = self.group[key]
        if isinstance(item, h5py.Group):
            return _H5Index(item)
        return item.asstr() if h5py.check_string_dtype(item.dtype) else item
