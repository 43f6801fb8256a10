"""One writer per store: an exclusive lock file with the owner's host and pid.

A lock whose owner process is gone (same host, pid not running) is reported
as stale; it is broken only when the user asks (``--break-lock``), because a
lock from another host cannot be checked from here.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from pipeline.errors import MvfxError

LOCK_NAME = ".mvfx-lock"


class StoreLocked(MvfxError):
    """Another writer holds the store."""


class StoreLock:
    def __init__(self, root: Path, break_lock: bool = False) -> None:
        self.path = Path(root) / LOCK_NAME
        self.break_lock = break_lock
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_break()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            self.held = True
            return
        raise StoreLocked(f"{self.path.parent}: could not take the store lock")

    def _refuse_or_break(self) -> None:
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        where = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('since', '?')}"
        if self.break_lock:
            self.path.unlink(missing_ok=True)
            return
        if _is_stale(owner):
            raise StoreLocked(
                f"{self.path.parent}: stale lock left by {where} (that process is gone); "
                "rerun with --break-lock to take the store over"
            )
        raise StoreLocked(
            f"{self.path.parent}: another mvfx run is writing this store ({where}); "
            "wait for it, or use --break-lock if you are sure it is dead"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _is_stale(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
