"""Feature stores: Zarr v3 (default) behind one read API.

    from mvfx.stores import open_store
    s = open_store("features.zarr")
    values, times = s.read("emobase", s.clip_ids("emobase")[0])

Workers stage a clip's block with ``stage_part`` (any process may); the single
writer from ``open_writer`` commits it. Nothing outside this package reaches
into a backend module.
"""
from __future__ import annotations

from pathlib import Path

import h5py

from mvfx.stores.base import FeatureStore
from mvfx.stores.hdf5_store import Hdf5FeatureStore
from mvfx.stores.zarr_store import StagedPart, ZarrFeatureStore, ZarrStoreWriter, stage_part


def open_store(path: str | Path) -> FeatureStore:
    """Open a store for reading: a Zarr folder or an exported HDF5 file."""
    path = Path(path)
    if path.is_file() and h5py.is_hdf5(path):
        return Hdf5FeatureStore(path)
    return ZarrFeatureStore(path, mode="r")


def is_store(path: str | Path) -> bool:
    """True for an mvfx store: an HDF5 file or a Zarr folder (its root holds zarr.json)."""
    path = Path(path)
    return (path.is_file() and h5py.is_hdf5(path)) or (path / "zarr.json").is_file()


def open_writer(path: str | Path, break_lock: bool = False) -> ZarrStoreWriter:
    """Open (or create) a store for writing; takes the store's lock."""
    return ZarrStoreWriter(path, break_lock=break_lock)


__all__ = [
    "FeatureStore", "Hdf5FeatureStore", "StagedPart", "ZarrFeatureStore", "ZarrStoreWriter", "is_store", "open_store", "open_writer",
    "stage_part",
]
