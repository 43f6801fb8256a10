"""One writer per store: an exclusive lock file holding the owner's host and pid, plus an OS lock on it.

The writer holds ``flock(LOCK_EX)`` on the lock file for as long as it runs;
the kernel drops that lock when the process ends in any way (exit, SIGKILL,
OOM kill), so a later run on the same host knows for certain whether the
writer is alive:
- the OS lock is held: another run is writing -> refused, one line;
- the OS lock is free and the file names a process of this host: that
  run has ended (crashed, killed); resume needs no flag, and the take-over
  is reported in one line;
- the file names another host (a shared file system, where the OS lock
  proves nothing about that host): refused unless ``--break-lock``.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mvfx.media.errors import MvfxError

LOCK_NAME = ".mvfx-lock"


class StoreLocked(MvfxError):
    """Another writer holds the store."""


class StoreLock:
    def __init__(self, root: Path, break_lock: bool = False) -> None:
        self.path = Path(root) / LOCK_NAME
        self.break_lock = break_lock
        self.held = False
        self.took_over: str | None = None  # one line saying whose dead lock was taken over, if any
        self._fd: int | None = None

    def acquire(self) -> None:
        store = self.path.parent
        if store.exists() and not store.is_dir():
            raise MvfxError(f"{store}: is a file, not a store folder; give a new or existing store path")
        try:
            store.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644))
        except OSError as exc:  # /proc/x.zarr, a read-only place, a parent that is a file
            raise MvfxError(f"{store}: cannot create a store here ({exc.strerror or exc})") from None
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise StoreLocked(f"{self.path.parent}: another mvfx run is writing this store ({_where(owner)}); "
                                  "wait for it to finish") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the previous holder removed the file between our open and our lock: try again
        try:
            self._check_previous_owner(_read_owner(fd))
        except BaseException:
            os.close(fd)
            raise
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd, self.held = fd, True

    def _check_previous_owner(self, owner: dict) -> None:
        """The OS lock is ours; decide whether a lock file left behind may be taken over."""
        if not owner or (owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()):
            return
        where = _where(owner)
        if self.break_lock:
            self.took_over = f"lock of {where} broken on request (--break-lock)"
        elif owner.get("host") != socket.gethostname():
            raise StoreLocked(f"{self.path.parent}: locked from another host ({where}); if that run is dead, "
                              "rerun with --break-lock")
        else:  # same host and the OS lock was free: that writer has ended, whatever its pid now names
            self.took_over = f"resumed after a crash: the lock of {where} was left by a run that has ended"

    def release(self) -> None:
        if self.held and self._fd is not None:
            self.path.unlink(missing_ok=True)  # unlink before unlocking: a waiter then re-opens a fresh file
            os.close(self._fd)
            self._fd, self.held = None, False


def _read_owner(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode()
        owner = json.loads(text) if text.strip() else {}
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {"host": "?", "pid": "?"}  # unreadable: treat as a foreign owner


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _where(owner: dict) -> str:
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"


class NoLock:
    """The lock of a store on object storage: none. A lock object there would outlive a killed run with nothing
    to release it; Icechunk's optimistic commits keep concurrent runs correct instead (see icechunk_store)."""

    held = False
    took_over: str | None = None

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass
