"""Errors that carry a one-line, user-facing reason.

Anything raised as a ``ClipError`` is recorded in the store's ``failures``
table with its ``stage`` and message; the run goes on with the next clip.
"""
from __future__ import annotations

import errno


class MvfxError(Exception):
    """An error whose message is fit to show a user as one line."""


class ClipError(MvfxError):
    """A problem with one clip (unreadable, truncated, missing stream...)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


class MvfxWarning(UserWarning):
    """Something a user must hear about that does not stop the command (the CLI prints it as one line)."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's text, prefixed by its class when that helps."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MvfxError):
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


# The file system refuses writes: full, over quota, read-only, file too large.
UNWRITABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class StoreUnwritable(MvfxError):
    """The store's file system refuses writes; a run stops (committed clips stay) and resumes once it can write."""

    @classmethod
    def from_os_error(cls, where: str, exc: OSError) -> StoreUnwritable:
        reason = exc.strerror or type(exc).__name__
        return cls(f"{where}: {reason.lower()} while writing; everything committed so far is safe "
                   "(`mvfx store verify` checks it): free space or fix the mount, then rerun the same command to resume")


def is_unwritable(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in UNWRITABLE_ERRNOS
