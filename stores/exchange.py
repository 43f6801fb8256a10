"""Export a store to one HDF5 file or a local Zarr store, and import an HDF5 file back, value for value.

Compacted rows are copied in slabs with their offsets unchanged, then any
uncompacted parts are appended; values keep their stored dtype, so a round
trip is bit-exact. Files are written under a temporary name and renamed
when complete, so a crash never leaves a half file under the final name.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import zarr

from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore
from mvfx.stores.hdf5_store import Hdf5FeatureStore, encode_attrs, write_h5_index, write_h5_table
from mvfx.stores.index import INDEXED, IndexColumns, Location, append_index, create_index_arrays
from mvfx.stores.layout import CLIP_COLUMNS, FAILURE_COLUMNS, FORMAT_VERSION, chunk_rows
from mvfx.stores.tables import frame_columns, write_zarr_table
from mvfx.stores.zarr_store import FEATURE_COMPRESSORS

SLAB_ROWS = 1 << 16


def _rows(src: FeatureStore, name: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(offset, values, times) slabs of the compacted rows, which keep their offsets in the copy."""
    end = src.index(name).compacted_end()
    for start in range(0, end, SLAB_ROWS):
        stop = min(end, start + SLAB_ROWS)
        yield start, *src.read_rows(name, Location(stop - start, offset=start))


def _layout(src: FeatureStore, name: str) -> tuple[IndexColumns, int, list[tuple[int, Location]]]:
    """The index of the copy (compacted offsets kept, parts appended), its row count, and (offset, part) to copy."""
    index = src.index(name)
    ids, offsets, counts = index.compacted()
    ids, offsets, counts = list(ids), list(offsets), list(counts)
    checksums = [index[c].checksum for c in ids]
    end = index.compacted_end()
    parts = []
    for clip_id, loc in sorted(index.parts.items()):
        ids.append(clip_id)
        offsets.append(end)
        counts.append(loc.count)
        checksums.append(loc.checksum)
        parts.append((end, loc))
        end += loc.count
    return IndexColumns.from_lists(ids, offsets, counts, checksums), end, parts


def _copy_features(src: FeatureStore, name: str, create) -> tuple[dict, IndexColumns]:
    """Copy one extractor's rows into arrays made by ``create(key, shape, dtype, chunks)``; returns its attrs
    (the index's left out) and its index."""
    attrs = src.attrs(name)
    dim, dtype = int(attrs["dim"]), attrs.get("dtype", "float32")
    columns, total, parts = _layout(src, name)
    values = create("values", (total, dim), dtype, (min(max(total, 1), chunk_rows(dim, np.dtype(dtype).itemsize)), dim))
    times = create("times", (total, 2), "float64", (min(max(total, 1), chunk_rows(2, 8)), 2))
    for start, v, t in _rows(src, name):
        values[start : start + len(v)] = v
        times[start : start + len(t)] = t
    for at, loc in parts:
        v, t = src.read_rows(name, loc)
        values[at : at + len(v)] = v
        times[at : at + len(t)] = t
    return attrs, columns


def export_hdf5(src: FeatureStore, out: str | Path) -> None:
    """Write ``src`` as one HDF5 file (gzip level 4 + shuffle, chunked along rows)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(encode_attrs(src.store_attrs() | {"format_version": FORMAT_VERSION}))
        write_h5_table(f.create_group("clips"), src.clips(), CLIP_COLUMNS)
        write_h5_table(f.create_group("failures"), src.failures(), FAILURE_COLUMNS)
        features = f.create_group("features")
        for name in src.extractors():
            group = features.create_group(name)

            def create(key, shape, dtype, chunks, group=group):
                return group.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks if shape[0] else None,
                                            compression="gzip", compression_opts=4, shuffle=True)

            attrs, columns = _copy_features(src, name, create)
            write_h5_index(group, columns)
            group.attrs.update(encode_attrs(attrs | {INDEXED: len(columns)}))
    os.replace(tmp, out)


def export_zarr(src: FeatureStore, zarr_path: str | Path) -> None:
    """Copy any store (an Icechunk one at any commit, an HDF5 file) into a new local Zarr store; ``zarr_path`` must not exist."""
    zarr_path = Path(zarr_path)
    if zarr_path.exists():
        raise MvfxError(f"{zarr_path}: already exists; export into a new path")
    tmp = zarr_path.with_name(zarr_path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w")
    root.attrs.update(src.store_attrs() | {"format_version": FORMAT_VERSION})
    write_zarr_table(root.require_group("clips"), frame_columns(src.clips(), CLIP_COLUMNS), CLIP_COLUMNS)
    write_zarr_table(root.require_group("failures"), frame_columns(src.failures(), FAILURE_COLUMNS), FAILURE_COLUMNS)
    for name in src.extractors():
        group = root.require_group(f"features/{name}")
        group.require_group("parts")

        def create(key, shape, dtype, chunks, group=group):
            return group.create_array(key, shape=shape, dtype=dtype, chunks=chunks, compressors=FEATURE_COMPRESSORS)

        attrs, columns = _copy_features(src, name, create)
        create_index_arrays(group)
        group.update_attributes(attrs | {INDEXED: 0})
        append_index(group, 0, columns)
    tmp.rename(zarr_path)


def import_hdf5(h5_path: str | Path, zarr_path: str | Path) -> None:
    """Restore a Zarr store from an exported HDF5 file; ``zarr_path`` must not exist."""
    src = Hdf5FeatureStore(h5_path)
    try:
        export_zarr(src, zarr_path)
    finally:
        src.close()
