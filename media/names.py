"""Names that are not valid UTF-8 (e.g. Latin-1 bytes from an old archive) or hold control characters
(a newline in a file name), made safe to store and print.

Python hands undecodable bytes to us as lone surrogates (``os.fsdecode``'s
``surrogateescape``): fine for opening the file, fatal for UTF-8 tables, JSON
attributes, HDF5 and terminals; a raw newline breaks every one-line message.
``printable`` writes each such byte or character as ``%XX`` (and, in those
names only, ``%`` itself as ``%25``), so the result is valid, printable UTF-8
and ``raw_bytes`` recovers the original bytes exactly. Other names are
returned unchanged.
"""
from __future__ import annotations

import re

_SURROGATE = re.compile("[\udc80-\udcff]")
_UNSAFE = re.compile("[\udc80-\udcff\x00-\x1f\x7f]")  # undecodable bytes and control characters
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def has_undecodable(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """``text`` with every undecodable byte and control character as %XX (and % as %25 when there is one)."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()) % 0xDC00:02X}", text.replace("%", "%25"))


def raw_bytes(escaped: str) -> bytes:
    """The original bytes of a name that ``printable`` escaped (the file system's bytes, for ``open``)."""
    def byte(m: re.Match) -> str:
        value = int(m.group(1), 16)
        return chr(value) if value < 0x80 else chr(0xDC00 + value)

    return _ESCAPED.sub(byte, escaped).encode("utf-8", "surrogateescape")
