"""Feature stores: Zarr v3 (default) behind one read API.

    from stores import open_store
    s = open_store("features.zarr")
    values, times = s.read("emobase", s.clip_ids("emobase")[0])
"""
from __future__ import annotations

from pathlib import Path

from stores.zarr_store import ZarrFeatureStore, ZarrStoreWriter


def open_store(path: str | Path) -> ZarrFeatureStore:
    """Open a store for reading."""
    return ZarrFeatureStore(path, mode="r")


def open_writer(path: str | Path, break_lock: bool = False) -> ZarrStoreWriter:
    """Open (or create) a store for writing; takes the store's lock."""
    return ZarrStoreWriter(path, break_lock=break_lock)


__all__ = ["ZarrFeatureStore", "ZarrStoreWriter", "open_store", "open_writer"]
