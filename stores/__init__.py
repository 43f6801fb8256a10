"""Feature stores: Zarr v3 on a local path (default), Icechunk on object storage or a local folder, and
exported HDF5 files, behind one read API.

    from mvfx.stores import open_store
    s = open_store("features.zarr")            # or "s3://bucket/features", "s3://bucket/features@paper-v1"
    values, times = s.read("emobase", s.clip_ids("emobase")[0])

Workers stage a clip's block through ``writer.staging()`` (any process may use it); the single writer from
``open_writer`` commits it. Nothing outside this package reaches into a backend module.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.stores.addresses import StoreAddress, parse_address
from mvfx.stores.backends import BACKENDS, Backend, backend_for, writable_backend
from mvfx.stores.base import FeatureStore, Staging, StoreWriter
from mvfx.stores.hdf5_store import Hdf5FeatureStore
from mvfx.stores.zarr_store import LocalStaging, StagedPart, ZarrFeatureStore, ZarrStoreWriter


def open_store(path: str | Path) -> FeatureStore:
    """Open a store for reading: a Zarr folder, an Icechunk repository (URL or folder, optionally ``@ref``)
    or an exported HDF5 file (``stores.backends`` says which)."""
    address = parse_address(path)
    backend = backend_for(address)
    if address.ref and not backend.keeps_history:
        raise MvfxError(f"{address.location}: only Icechunk stores have tags and commits to read at (@{address.ref})")
    return backend.reader(address)


def is_store(path: str | Path) -> bool:
    """True for an mvfx store: an HDF5 file, a Zarr folder (its root holds zarr.json), an Icechunk repository."""
    address = parse_address(path)
    backend = backend_for(address)
    return backend.name != "zarr" or (address.path / "zarr.json").is_file()


def open_writer(path: str | Path, break_lock: bool = False) -> StoreWriter:
    """Open (or create) a store for writing: takes the lock of a local store; on object storage, commits are
    transactions instead."""
    address = parse_address(path)
    return writable_backend(address).writer(address, break_lock)


def store_log(path: str | Path) -> pd.DataFrame:
    """Commits of an Icechunk store, newest first (commit, time, message, clips, tags)."""
    from mvfx.stores.icechunk_store import history

    return history(_history_address(path))


def tag_store(path: str | Path, name: str) -> str:
    """Tag the store's tip (or ``STORE@ref``) so that it can be read later as ``STORE@name``; returns the commit id."""
    from mvfx.stores.icechunk_store import tag

    return tag(_history_address(path), name)


def _history_address(path: str | Path) -> StoreAddress:
    address = parse_address(path)
    if not backend_for(address).keeps_history:
        raise MvfxError(f"{address}: not an Icechunk store; only those keep commits (local Zarr stores have no history)")
    return address


__all__ = [
    "BACKENDS",
    "Backend",
    "FeatureStore",
    "Hdf5FeatureStore",
    "LocalStaging",
    "StagedPart",
    "Staging",
    "StoreWriter",
    "ZarrFeatureStore",
    "ZarrStoreWriter",
    "is_store",
    "open_store",
    "open_writer",
    "store_log",
    "tag_store",
]
