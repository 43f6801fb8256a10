"""Names that are not valid UTF-8 (e.g. Latin-1 bytes from an old archive), made safe to store and print.

Python hands such bytes to us as lone surrogates (``os.fsdecode``'s
``surrogateescape``): fine for opening the file, fatal for UTF-8 tables, JSON
attributes, HDF5 and terminals. ``printable`` writes each such byte as
``%XX`` (and, in those names only, ``%`` itself as ``%25``), so the result is
valid UTF-8 and ``raw_bytes`` recovers the original bytes exactly. Valid
names are returned unchanged.
"""
from __future__ import annotations

import re

_SURROGATE = re.compile("[\udc80-\udcff]")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


def has_undecodable(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """``text`` with every undecodable byte as %XX (and % as %25 when there is one); valid text unchanged."""
    if not has_undecodable(text):
        return text
    return _SURROGATE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", text.replace("%", "%25"))


def raw_bytes(escaped: str) -> bytes:
    """The original bytes of a name that ``printable`` escaped (the file system's bytes, for ``open``)."""
    raw = _ESCAPED.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), escaped)
    return raw.replace("\udc25", "%").encode("utf-8", "surrogateescape")
