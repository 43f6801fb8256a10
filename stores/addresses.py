"""Where a store lives: a local path or an object-store URL, optionally pinned to a tag or commit.

    features.zarr                    a local Zarr store (the default format)
    features.icechunk                a local Icechunk repository (a new store is one when its name ends so)
    s3://bucket/prefix               Icechunk on S3 or an S3-compatible server; also gs://, az://
    s3://bucket/prefix@paper-v1      the same store as of a tag, a branch or a commit id (read-only)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mvfx.media.errors import MvfxError

REMOTE_SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
ICECHUNK_SUFFIX = ".icechunk"


@dataclass(frozen=True)
class StoreAddress:
    location: str  # the path or URL, without "@ref"
    ref: str | None = None  # a tag, branch or commit id to read at

    @property
    def service(self) -> str | None:
        """s3, gcs or azure for an object-store URL; None for a local path."""
        return REMOTE_SCHEMES[self.location.split("://", 1)[0].lower()] if "://" in self.location else None

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.location.split("://", 1)[1].partition("/")
        return bucket, prefix.strip("/")

    @property
    def path(self) -> Path:
        return Path(self.location)

    def __str__(self) -> str:
        return f"{self.location}@{self.ref}" if self.ref else self.location


def parse_address(text: str | Path) -> StoreAddress:
    """Split ``STORE[@REF]``; an existing local path is taken whole (its name may contain '@')."""
    text = str(text).removeprefix("file://")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in REMOTE_SCHEMES:
            raise MvfxError(f"{text}: stores live on a local path or at s3://, gs:// or az:// (not {scheme}://)")
        if not text.split("://", 1)[1].split("/", 1)[0]:
            raise MvfxError(f"{text}: no bucket in the store URL (expected {scheme}://BUCKET/PREFIX)")
    elif os.path.exists(text):
        return StoreAddress(text)
    base, sep, ref = text.rpartition("@")
    if sep and base and ref and "/" not in ref:
        return StoreAddress(base, ref)
    return StoreAddress(text)
