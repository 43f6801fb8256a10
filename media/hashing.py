"""sha256 of a file's bytes: the one hashing helper (clip identity, weight files)."""
from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()
