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
from mvfx.stores.base import FeatureStore, Location
from mvfx.stores.hdf5_store import Hdf5FeatureStore, encode_attrs, write_h5_table
from mvfx.stores.layout import CLIP_COLUMNS, FAILURE_COLUMNS, chunk_rows
from mvfx.stores.tables import write_zarr_table
from mvfx.stores.zarr_store import FEATURE_COMPRESSORS

SLAB_ROWS = 1 << 16


def _rows(src: FeatureStore, name: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(offset, values, times) slabs: compacted rows first, then parts, with the index they end up with."""
    index = src.index(name)
    end = max((loc.offset + loc.count for loc in index.values() if not loc.part), default=0)
    for start in range(0, end, SLAB_ROWS):
        stop = min(end, start + SLAB_ROWS)
        yield start, *src.read_rows(name, Location(stop - start, offset=start))


def _layout(src: FeatureStore, name: str) -> tuple[dict, int, list[tuple[str, Location]]]:
    """The clip_index of the copy (compacted offsets kept, parts appended), its row count, and the parts."""
    index = src.index(name)
    compacted = sorted(((c, loc) for c, loc in index.items() if not loc.part), key=lambda t: t[1].offset)
    parts = sorted((c, loc) for c, loc in index.items() if loc.part)
    offset = max((loc.offset + loc.count for _, loc in compacted), default=0)
    placed = [(c, loc.offset, loc) for c, loc in compacted]
    for clip_id, loc in parts:
        placed.append((clip_id, offset, loc))
        offset += loc.count
    ci = {
        "clip_id": [c for c, _, _ in placed],
        "offset": [o for _, o, _ in placed],
        "count": [loc.count for _, _, loc in placed],
        "checksum": [loc.checksum for _, _, loc in placed],
    }
    return ci, offset, parts


def _copy_features(src: FeatureStore, name: str, create) -> dict:
    """Copy one extractor's rows into arrays made by ``create(key, shape, dtype, chunks)``; returns its attrs."""
    attrs = src.group_attrs(name)
    dim, dtype = int(attrs["dim"]), attrs.get("dtype", "float32")
    ci, total, parts = _layout(src, name)
    values = create("values", (total, dim), dtype, (min(max(total, 1), chunk_rows(dim, np.dtype(dtype).itemsize)), dim))
    times = create("times", (total, 2), "float64", (min(max(total, 1), chunk_rows(2, 8)), 2))
    for start, v, t in _rows(src, name):
        values[start : start + len(v)] = v
        times[start : start + len(t)] = t
    for clip_id, loc in parts:
        v, t = src.read_rows(name, loc)
        at = ci["offset"][ci["clip_id"].index(clip_id)]
        values[at : at + len(v)] = v
        times[at : at + len(t)] = t
    return {**attrs, "clip_index": ci}


def export_hdf5(src: FeatureStore, out: str | Path) -> None:
    """Write ``src`` as one HDF5 file (gzip level 4 + shuffle, chunked along rows)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(encode_attrs(src.store_attrs()))
        write_h5_table(f.create_group("clips"), src.clips(), CLIP_COLUMNS)
        write_h5_table(f.create_group("failures"), src.failures(), FAILURE_COLUMNS)
        features = f.create_group("features")
        for name in src.extractors():
            group = features.create_group(name)

            def create(key, shape, dtype, chunks, group=group):
                return group.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks if shape[0] else None,
                                            compression="gzip", compression_opts=4, shuffle=True)

            group.attrs.update(encode_attrs(_copy_features(src, name, create)))
    os.replace(tmp, out)


def export_zarr(src: FeatureStore, zarr_path: str | Path) -> None:
    """Copy any store (an Icechunk one at any commit, an HDF5 file) into a new local Zarr store; ``zarr_path`` must not exist."""
    zarr_path = Path(zarr_path)
    if zarr_path.exists():
        raise MvfxError(f"{zarr_path}: already exists; export into a new path")
    tmp = zarr_path.with_name(zarr_path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w")
    root.attrs.update(src.store_attrs())
    write_zarr_table(root.require_group("clips"), src.clips().to_dict("records"), CLIP_COLUMNS)
    write_zarr_table(root.require_group("failures"), src.failures().to_dict("records"), FAILURE_COLUMNS)
    for name in src.extractors():
        group = root.require_group(f"features/{name}")
        group.require_group("parts")

        def create(key, shape, dtype, chunks, group=group):
            return group.create_array(key, shape=shape, dtype=dtype, chunks=chunks, compressors=FEATURE_COMPRESSORS)

        group.attrs.update(_copy_features(src, name, create))
    tmp.rename(zarr_path)


def import_hdf5(h5_path: str | Path, zarr_path: str | Path) -> None:
    """Restore a Zarr store from an exported HDF5 file; ``zarr_path`` must not exist."""
    src = Hdf5FeatureStore(h5_path)
    try:
        export_zarr(src, zarr_path)
    finally:
        src.close()
