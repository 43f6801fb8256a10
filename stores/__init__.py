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

import h5py
import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.stores.addresses import ICECHUNK_SUFFIX, StoreAddress, parse_address
from mvfx.stores.base import FeatureStore, Staging
from mvfx.stores.hdf5_store import Hdf5FeatureStore
from mvfx.stores.zarr_store import LocalStaging, StagedPart, ZarrFeatureStore, ZarrStoreWriter


def _is_icechunk(address: StoreAddress, new: bool = False) -> bool:
    """Object-store URLs are always Icechunk; a local folder when it holds a repository (or, new, is named *.icechunk).

    The backend (and icechunk itself) is imported only once an address looks like Icechunk, so a local Zarr run
    never loads it and a node without icechunk installed can still use local stores."""
    if address.service:
        return True
    path = address.path
    if path.is_dir() and (path / "refs").is_dir() and (path / "snapshots").is_dir():
        from mvfx.stores.icechunk_store import repository_exists

        return repository_exists(address)
    return new and not path.exists() and path.name.endswith(ICECHUNK_SUFFIX)


def open_store(path: str | Path) -> FeatureStore:
    """Open a store for reading: a Zarr folder, an Icechunk repository (URL or folder, optionally ``@ref``)
    or an exported HDF5 file."""
    address = parse_address(path)
    if _is_icechunk(address):
        from mvfx.stores.icechunk_store import IcechunkFeatureStore

        return IcechunkFeatureStore(address)
    if address.ref:
        raise MvfxError(f"{address.location}: only Icechunk stores have tags and commits to read at (@{address.ref})")
    if address.path.is_file() and h5py.is_hdf5(address.path):
        return Hdf5FeatureStore(address.path)
    return ZarrFeatureStore(address.path, mode="r")


def is_store(path: str | Path) -> bool:
    """True for an mvfx store: an HDF5 file, a Zarr folder (its root holds zarr.json), an Icechunk repository."""
    address = parse_address(path)
    if _is_icechunk(address):
        return True
    return (address.path.is_file() and h5py.is_hdf5(address.path)) or (address.path / "zarr.json").is_file()


def open_writer(path: str | Path, break_lock: bool = False) -> ZarrStoreWriter:
    """Open (or create) a store for writing: takes the lock of a local store; on object storage, commits are
    transactions instead."""
    address = parse_address(path)
    if _is_icechunk(address, new=True):
        from mvfx.stores.icechunk_store import IcechunkStoreWriter

        return IcechunkStoreWriter(address, break_lock=break_lock)
    return ZarrStoreWriter(address.path, break_lock=break_lock)


def store_log(path: str | Path) -> pd.DataFrame:
    """Commits of an Icechunk store, newest first (commit, time, message, clips, tags)."""
    from mvfx.stores.icechunk_store import history

    return history(_icechunk_address(path))


def tag_store(path: str | Path, name: str) -> str:
    """Tag the store's tip (or ``STORE@ref``) so that it can be read later as ``STORE@name``; returns the commit id."""
    from mvfx.stores.icechunk_store import tag

    return tag(_icechunk_address(path), name)


def _icechunk_address(path: str | Path) -> StoreAddress:
    address = parse_address(path)
    if not _is_icechunk(address):
        raise MvfxError(f"{address}: not an Icechunk store; only those keep commits (local Zarr stores have no history)")
    return address


__all__ = [
    "FeatureStore",
    "Hdf5FeatureStore",
    "LocalStaging",
    "StagedPart",
    "Staging",
    "ZarrFeatureStore",
    "ZarrStoreWriter",
    "is_store",
    "open_store",
    "open_writer",
    "store_log",
    "tag_store",
]
