"""Which backend holds a store: a small table from URL scheme, file suffix or what is on disk to a reader and a writer.

    s3://, gs://, az://      Icechunk (object storage has no atomic rename; commits are transactions)
    *.icechunk, or a folder   Icechunk on a local folder
      holding a repository
    *.h5 / *.hdf5, or an      HDF5 export (read-only; written by `mvfx store export`)
      HDF5 file
    anything else             Zarr v3 folder (the default)

A backend's module is imported only when the table picks it, so a local Zarr run never loads icechunk (nor
its object-store SDKs). To add a backend: a ``FeatureStore`` (reader), optionally a ``StoreWriter``, and one
``Backend`` row here, before the Zarr default (see docs/architecture.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mvfx.media.errors import MvfxError
from mvfx.stores.addresses import ICECHUNK_SUFFIX, StoreAddress
from mvfx.stores.base import FeatureStore, StoreWriter


@dataclass(frozen=True)
class Backend:
    """One row of the table: when it holds an address, and how to read and write it."""

    name: str
    holds: Callable[[StoreAddress, bool], bool]  # (address, new: a store about to be created) -> this backend's?
    reader: Callable[[StoreAddress], FeatureStore]
    writer: Callable[[StoreAddress, bool], StoreWriter] | None  # (address, break_lock); None: read-only
    keeps_history: bool = False  # commits and tags (`store log`, `store tag`, STORE@REF)


def _icechunk_holds(address: StoreAddress, new: bool) -> bool:
    if address.service:
        return True
    path = address.path
    if path.is_dir() and (path / "refs").is_dir() and (path / "snapshots").is_dir():  # a repository's layout
        from mvfx.stores.icechunk_store import repository_exists

        return repository_exists(address)
    return path.name.endswith(ICECHUNK_SUFFIX) and (new and not path.exists())


def _icechunk_reader(address: StoreAddress) -> FeatureStore:
    from mvfx.stores.icechunk_store import IcechunkFeatureStore

    return IcechunkFeatureStore(address)


def _icechunk_writer(address: StoreAddress, break_lock: bool) -> StoreWriter:
    from mvfx.stores.icechunk_store import IcechunkStoreWriter

    return IcechunkStoreWriter(address, break_lock=break_lock)


def _hdf5_holds(address: StoreAddress, new: bool) -> bool:
    import h5py

    path = address.path
    return not address.service and path.is_file() and h5py.is_hdf5(path)


def _hdf5_reader(address: StoreAddress) -> FeatureStore:
    from mvfx.stores.hdf5_store import Hdf5FeatureStore

    return Hdf5FeatureStore(address.path)


def _zarr_reader(address: StoreAddress) -> FeatureStore:
    from mvfx.stores.zarr_store import ZarrFeatureStore

    return ZarrFeatureStore(address.path, mode="r")


def _zarr_writer(address: StoreAddress, break_lock: bool) -> StoreWriter:
    from mvfx.stores.zarr_store import ZarrStoreWriter

    return ZarrStoreWriter(address.path, break_lock=break_lock)


BACKENDS: tuple[Backend, ...] = (
    Backend("icechunk", _icechunk_holds, _icechunk_reader, _icechunk_writer, keeps_history=True),
    Backend("hdf5", _hdf5_holds, _hdf5_reader, None),
    Backend("zarr", lambda address, new: not address.service, _zarr_reader, _zarr_writer),
)


def backend_for(address: StoreAddress, new: bool = False) -> Backend:
    """The first backend of ``BACKENDS`` that holds ``address`` (``new``: the store may not exist yet)."""
    return next(b for b in BACKENDS if b.holds(address, new))


def writable_backend(address: StoreAddress) -> Backend:
    """The backend that writes ``address``; a one-line error for a read-only one."""
    backend = backend_for(address, new=True)
    if backend.writer is None:
        raise MvfxError(f"{address}: an {backend.name} file is read-only here; write to a Zarr or Icechunk store "
                        f"(restore it first with `mvfx store import`)")
    return backend
