"""Feature stores: Zarr v3 (default) behind one read API.

    from stores import open_store
    s = open_store("features.zarr")
    values, times = s.read("emobase", s.clip_ids("emobase")[0])
"""
from __future__ import annotations

from pathlib import Path

import h5py

from stores.base import FeatureStore
from stores.hdf5_store import Hdf5FeatureStore
from stores.zarr_store import ZarrFeatureStore, ZarrStoreWriter


def open_store(path: str | Path) -> FeatureStore:
    """Open a store for reading: a Zarr folder or an exported HDF5 file."""
    path = Path(path)
    if path.is_file() and h5py.is_hdf5(path):
        return Hdf5FeatureStore(path)
    return ZarrFeatureStore(path, mode="r")


def open_writer(path: str | Path, break_lock: bool = False) -> ZarrStoreWriter:
    """Open (or create) a store for writing; takes the store's lock."""
    return ZarrStoreWriter(path, break_lock=break_lock)


__all__ = ["FeatureStore", "Hdf5FeatureStore", "ZarrFeatureStore", "ZarrStoreWriter", "open_store", "open_writer"]
