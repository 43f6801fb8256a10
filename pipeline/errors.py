"""Errors that carry a one-line, user-facing reason.

Anything raised as a ``ClipError`` is recorded in the store's ``failures``
table with its ``stage`` and message; the run goes on with the next clip.
"""
from __future__ import annotations


class MvfxError(Exception):
    """An error whose message is fit to show a user as one line."""


class ClipError(MvfxError):
    """A problem with one clip (unreadable, truncated, missing stream...)."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message


def one_line(exc: BaseException) -> str:
    """The first line of an exception's text, prefixed by its class when that helps."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MvfxError):
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
