"""mvfx stores on object storage (or a local folder) through Icechunk: the same layout, committed in transactions.

Why: an object store has no atomic rename, so the local protocol (stage a part, rename it into place) cannot
work there. Icechunk keeps Zarr v3 data in a repository with atomic, serialisable commits, snapshots and
tags; plain ``zarr`` + ``icechunk`` read it (see the README).

How a run writes (the same ``open_writer`` API as a local store):
- The writer (the run's client) holds a writable session on branch ``main``. Before handing out work it commits
  what it registered, then forks one session per clip task (``Session.fork``). A worker writes the clip's parts
  straight into its fork, so chunks go from the worker to the object store, and returns the fork with the result.
- ``commit(staged)`` only queues the fork. ``checkpoint`` (every 10 s of a run, and at its end) merges the queued
  forks, writes the tables and commits them as one snapshot. A killed worker's fork is never merged: its chunks
  are unreferenced (Icechunk's garbage collection removes them) and never visible. A killed client loses only
  what it had not committed; rerunning the command resumes from the last commit.
- Concurrent runs. A local folder takes the same lock as a local Zarr store (Icechunk's local storage is not
  safe for concurrent commits). On object storage runs commit optimistically: when another run committed first,
  the transaction is replayed on the new tip (the tables re-read, each run's records of its own clips kept, the
  forks merged again). A clip the other run committed too is a conflict: one line, and this run stops; what it
  committed before stays.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as pkg_version

import icechunk
import numpy as np
import pandas as pd
import zarr

from mvfx.media.errors import MvfxError, one_line
from mvfx.stores.addresses import StoreAddress
from mvfx.stores.base import FeatureStore
from mvfx.stores.index import Location
from mvfx.stores.lock import NoLock, StoreLock
from mvfx.stores.tables import write_zarr_table
from mvfx.stores.zarr_store import StagedPart, ZarrFeatureStore, ZarrStoreWriter, part_name, write_part

BRANCH = "main"
COMMIT_TRIES = 20  # replays before giving up when other runs keep committing first
LISTED_CLIPS = 100  # clip ids named in a commit's metadata

# Icechunk logs a warning on every open of local storage; mvfx holds a lock there, so only errors are shown.
icechunk.set_logs_filter(os.environ.get("ICECHUNK_LOG", "icechunk=error"))


class StoreConflict(MvfxError):
    """Another run committed the same clip to this store meanwhile."""


def storage_for(address: StoreAddress) -> icechunk.Storage:
    """Icechunk storage for a path or URL. Credentials come from the environment or profiles, never from mvfx's
    arguments: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE, AWS_REGION, and AWS_ENDPOINT_URL(_S3) for
    an S3-compatible server; GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_ACCOUNT and its keys."""
    service = address.service
    if service is None:
        return icechunk.local_filesystem_storage(str(address.path.resolve()))
    bucket, prefix = address.bucket_and_prefix
    if service == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return icechunk.s3_storage(
            bucket=bucket, prefix=prefix or None, from_env=True, endpoint_url=endpoint,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            allow_http=bool(endpoint and endpoint.startswith("http://")), force_path_style=bool(endpoint),
        )
    if service == "gcs":
        return icechunk.gcs_storage(bucket=bucket, prefix=prefix or None, from_env=True)
    account = os.environ.get("AZURE_STORAGE_ACCOUNT")
    if not account:
        raise MvfxError(f"{address.location}: set AZURE_STORAGE_ACCOUNT to the storage account of this container")
    return icechunk.azure_storage(account=account, container=bucket, prefix=prefix, from_env=True)


def _reason(exc: BaseException) -> str:
    """One line of an Icechunk error, without the "x " its report style puts before the message."""
    return re.sub(r"^(\w+: )?x ", r"\1", one_line(exc))


def _failed(address: StoreAddress, exc: BaseException) -> MvfxError:
    reason = _reason(exc)
    if "dispatch failure" in reason:  # the SDK's words for "no answer": name what to check
        reason = "cannot reach the object store; check AWS_ENDPOINT_URL (for a server other than AWS) and the network"
    return MvfxError(f"{address}: {reason}")


def repository_exists(address: StoreAddress) -> bool:
    try:
        return icechunk.Repository.exists(storage_for(address))
    except (icechunk.IcechunkError, ValueError, OSError) as exc:
        raise _failed(address, exc) from None


def open_repository(address: StoreAddress, create: bool = False) -> icechunk.Repository:
    """The repository at ``address``; a new one when ``create`` and there is none."""
    storage = storage_for(address)
    try:
        if icechunk.Repository.exists(storage):
            return icechunk.Repository.open(storage)
        if create:
            return icechunk.Repository.create(storage)
    except (icechunk.IcechunkError, ValueError, OSError) as exc:
        raise _failed(address, exc) from None
    raise MvfxError(f"{address}: not an mvfx store (no Icechunk repository there)")


def readonly_session(repo: icechunk.Repository, address: StoreAddress) -> icechunk.Session:
    """The branch tip, or the tag, branch or commit ``address.ref`` names."""
    ref = address.ref
    try:
        if ref is None:
            return repo.readonly_session(branch=BRANCH)
        if ref in repo.list_tags():
            return repo.readonly_session(tag=ref)
        if ref in repo.list_branches():
            return repo.readonly_session(branch=ref)
        return repo.readonly_session(snapshot_id=ref)
    except (icechunk.IcechunkError, ValueError) as exc:
        raise MvfxError(f"{address}: no tag, branch or commit {ref!r} in this store ({_reason(exc)})") from None


class IcechunkFeatureStore(ZarrFeatureStore):
    """Read access to an Icechunk store, at its tip or as of a tag or commit."""

    def __init__(self, address: StoreAddress) -> None:
        session = readonly_session(open_repository(address), address)
        super().__init__(str(address), root=zarr.open_group(session.store, mode="r"))
        self.commit_id = session.snapshot_id


@dataclass
class ForkStaging:
    """A worker's way into an Icechunk store: parts are written into a forked session the writer merges later."""

    fork: icechunk.ForkSession
    location: str

    def stage(self, extractor: str, clip_id: str, values: np.ndarray, times: np.ndarray, dtype: str,
              clip_record: dict | None = None) -> StagedPart:
        parts = None
        try:
            parts = zarr.open_group(self.fork.store, mode="a").require_group(f"features/{extractor}/parts")
            group = parts.create_group(part_name(clip_id), overwrite=True)
            rows = write_part(group, clip_id, values, times, dtype, clip_record)
        except icechunk.IcechunkError as exc:  # the object store refused: a store failure of this pair, like an OSError
            self._forget_half_part(parts, clip_id)
            raise OSError(errno.EIO, f"{self.location}: {_reason(exc)}") from None
        return StagedPart(group.path, extractor, clip_id, rows, fork=self.fork)

    @staticmethod
    def _forget_half_part(parts: zarr.Group | None, clip_id: str) -> None:
        """Delete what a failed write left of a part: the fork is merged for the clip's other extractors, and a
        half part would be merged with them."""
        if parts is not None:
            with contextlib.suppress(KeyError, icechunk.IcechunkError):
                del parts[part_name(clip_id)]

    def reader(self) -> FeatureStore:
        return ZarrFeatureStore(self.location, root=zarr.open_group(self.fork.store, mode="r"))

    def __str__(self) -> str:
        return self.location


class IcechunkStoreWriter(ZarrStoreWriter):
    """The writer of an Icechunk store: the local writer's bookkeeping, with commits as Icechunk transactions."""

    def __init__(self, address: StoreAddress, break_lock: bool = False) -> None:
        if address.ref:
            raise MvfxError(f"{address}: a store as of a tag or commit is read-only; write to {address.location}")
        self.repo = open_repository(address, create=True)
        self._session = self.repo.writable_session(BRANCH)
        self._pending: list[StagedPart] = []  # committed by the run, visible after the next transaction
        self._registered: list[tuple[dict, str]] = []
        self._touched: set[str] = set()  # clips whose records this run wrote: in a replay, ours win for these
        lock = NoLock() if address.service else StoreLock(address.path, break_lock=break_lock)
        super().__init__(address.location, lock=lock, root=self._writable_root())

    def _writable_root(self) -> zarr.Group:
        return zarr.open_group(self._session.store, mode="a")

    def _recover(self) -> None:
        """Nothing to clean: a crash leaves no visible half-written state in a repository."""

    def _write_table(self, name: str, columns: dict[str, np.ndarray], schema: dict[str, str]) -> None:
        """In place: the transaction that follows makes the whole table visible at once, or none of it."""
        write_zarr_table(self.root.require_group(name), columns, schema)

    def _finish_table_swaps(self) -> None:
        """None to finish: tables are written in place (``_write_table``)."""

    def staging(self) -> ForkStaging:
        if self._session.has_uncommitted_changes:  # a session with changes cannot be forked
            self._transaction("mvfx: register extractors")
        return ForkStaging(self._session.fork(), self.location)

    def register_extractor(self, description: dict, dtype: str = "float32") -> None:
        super().register_extractor(description, dtype)
        self._registered.append((description, dtype))

    def _publish(self, staged: StagedPart) -> None:
        self._pending.append(staged)
        self._touched.add(staged.clip_id)

    def _discard(self, staged: StagedPart) -> None:
        """Nothing to delete: a fork that is never merged leaves nothing visible."""

    def set_clip(self, record: dict) -> None:
        super().set_clip(record)
        self._touched.add(record["clip_id"])

    def add_failure(self, clip_id: str, extractor: str, stage: str, error: str, message: str) -> None:
        super().add_failure(clip_id, extractor, stage, error, message)
        self._touched.add(clip_id)

    def clear_failures(self, clip_id: str, extractors: list[str]) -> None:
        super().clear_failures(clip_id, extractors)
        self._touched.add(clip_id)

    def checkpoint(self) -> None:
        self._write_tables()  # only tables that changed: every rewrite would be a new version of each column
        self._transaction(self._message())

    def compact(self) -> int:
        moved = super().compact()
        self._transaction(f"mvfx: compact {moved} parts", redo=self._compact_parts)
        return moved

    def _message(self) -> str:
        clips = sorted({p.clip_id for p in self._pending})
        extractors = sorted({p.extractor for p in self._pending})
        return f"mvfx: {len(clips)} clip{'s' if len(clips) != 1 else ''} ({', '.join(extractors)})" if clips else "mvfx: clips and failures tables"

    def _transaction(self, message: str, redo: Callable[[], object] | None = None) -> None:
        """Commit everything since the last commit as one snapshot; when another run committed first, replay on
        its tip (``redo`` repeats work that must see that tip, e.g. a compaction)."""
        clips = sorted({p.clip_id for p in self._pending})
        metadata = {"mvfx_version": pkg_version("mvfx"), "host": socket.gethostname(), "clips": len(clips),
                    "clip_ids": clips[:LISTED_CLIPS]}
        for _ in range(COMMIT_TRIES):
            self._merge_pending()
            if not self._session.has_uncommitted_changes:
                break
            try:
                self._session.commit(message, metadata=metadata)
                break
            except icechunk.ConflictError:
                self._replay(redo)
            except icechunk.IcechunkError as exc:
                raise MvfxError(f"{self.location}: commit failed ({_reason(exc)}); what was committed before is safe, "
                                "rerun the command to resume") from None
        else:
            raise StoreConflict(f"{self.location}: other runs kept committing first ({COMMIT_TRIES} tries); rerun to resume")
        self._pending.clear()
        self._new_session()

    def _merge_pending(self) -> None:
        for fork in {id(p.fork): p.fork for p in self._pending}.values():
            self._session.merge(fork)
        for description, dtype in self._registered:  # a fork made before an extractor was registered wrote its group bare
            if "version" not in self.root[f"features/{description['extractor']}"].attrs:
                ZarrStoreWriter.register_extractor(self, description, dtype)

    def _new_session(self) -> None:
        self._session = self.repo.writable_session(BRANCH)
        self.root = self._writable_root()
        self._index.clear()

    def _replay(self, redo: Callable[[], object] | None) -> None:
        """Redo this transaction on the branch's new tip, keeping what the other run committed."""
        self._new_session()
        for staged in self._pending:
            if staged.clip_id in self.index(staged.extractor):
                raise StoreConflict(f"{self.location}: another run committed {staged.extractor} of clip {staged.clip_id!r} "
                                    "meanwhile; this run stops (what it committed before stays), rerun to resume")
        self._clips.rebase(self.clips(), lambda clip_id: clip_id in self._touched)
        self._failures.rebase(self.failures(), lambda key: key[0] in self._touched)
        self._init_layout()
        for description, dtype in self._registered:
            ZarrStoreWriter.register_extractor(self, description, dtype)
        if redo is not None:
            redo()
        self._write_tables()
        for staged in self._pending:
            self.index(staged.extractor).add_part(staged.clip_id, Location(staged.rows, part=part_name(staged.clip_id)))


def history(address: StoreAddress) -> pd.DataFrame:
    """The store's commits, newest first: id, time, message, clips, tags."""
    repo = open_repository(address)
    tags: dict[str, list[str]] = {}
    for tag in sorted(repo.list_tags()):
        tags.setdefault(repo.lookup_tag(tag), []).append(tag)
    try:
        commits = list(repo.ancestry(snapshot_id=readonly_session(repo, address).snapshot_id))  # the tip, or @ref
    except icechunk.IcechunkError as exc:
        raise _failed(address, exc) from None
    return pd.DataFrame([
        {"commit": c.id, "time": c.written_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "message": c.message,
         "clips": int(c.metadata.get("clips", 0)), "tags": ",".join(tags.get(c.id, []))}
        for c in commits
    ], columns=["commit", "time", "message", "clips", "tags"])


def tag(address: StoreAddress, name: str) -> str:
    """Tag the commit ``address`` points at (the tip, or its @ref); returns the commit id."""
    repo = open_repository(address)
    snapshot = readonly_session(repo, address).snapshot_id
    try:
        repo.create_tag(name, snapshot)
    except icechunk.IcechunkError as exc:
        raise MvfxError(f"{address}: cannot tag {snapshot} as {name!r} ({_reason(exc)})") from None
    return snapshot
