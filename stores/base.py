"""The read API every store backend shares, and the checks of ``mvfx store verify``.

A backend supplies attributes, the list of uncompacted parts, row reads and
the two tables; the index, clip lists, reads by clip, the summary and the
verification are written once here.
"""
from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from mvfx.media.errors import MvfxError
from mvfx.stores.layout import CLIP_COLUMNS, FORMAT_NAME, FORMAT_VERSION
from mvfx.stores.tables import to_columns, to_frame

EMPTY_INDEX = {"clip_id": [], "offset": [], "count": [], "checksum": []}


@dataclass(frozen=True)
class Location:
    """Where one clip's rows live: compacted rows [offset, offset+count) or a part group."""

    count: int
    offset: int = -1
    part: str = ""
    checksum: str = ""


def values_checksum(values: np.ndarray) -> str:
    """crc32 of the stored bytes of one clip's values (catches bit rot and torn writes)."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(values).tobytes()):08x}"


def check_format(path: str | Path, attrs: dict) -> None:
    fmt = attrs.get("format")
    if fmt != FORMAT_NAME:
        raise MvfxError(f"{path}: not an mvfx store (format {fmt!r})")
    if attrs.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise MvfxError(f"{path}: store format {attrs['format_version']} is newer than this mvfx reads")


class Staging(Protocol):
    """Where a worker writes one clip's finished block before the store's writer commits it (``writer.staging()``)."""

    def stage(self, extractor: str, clip_id: str, values: np.ndarray, times: np.ndarray, dtype: str,
              clip_record: dict | None = None): ...

    def reader(self) -> FeatureStore:
        """The store as committed, for workers that need earlier results."""


class FeatureStore(ABC):
    """Read access to an mvfx store, whatever the file format."""

    def __init__(self, path: str | Path) -> None:
        self.location = str(path)  # as the user named it: a path, or a URL such as s3://bucket/prefix
        self.path = Path(path)
        self.commit_id: str | None = None  # the commit read, for stores that keep history (Icechunk)
        self._index: dict[str, dict[str, Location]] = {}

    def reference(self) -> dict[str, str | None]:
        """How a run names the features it used: the store, and the exact commit where there is one."""
        return {"store": self.location, "store_commit": self.commit_id}

    # --- what a backend provides -------------------------------------------------
    @abstractmethod
    def store_attrs(self) -> dict: ...

    @abstractmethod
    def extractors(self) -> list[str]: ...

    @abstractmethod
    def group_attrs(self, extractor: str) -> dict:
        """Every attribute of ``features/<extractor>``, clip_index included."""

    @abstractmethod
    def parts(self, extractor: str) -> list[tuple[str, dict]]:
        """(part id, part attrs) of committed, uncompacted parts."""

    @abstractmethod
    def read_rows(self, extractor: str, loc: Location) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def compacted_rows(self, extractor: str) -> int: ...

    @abstractmethod
    def clips_table(self) -> pd.DataFrame:
        """The clips table as stored."""

    @abstractmethod
    def failures(self) -> pd.DataFrame: ...

    # --- shared ------------------------------------------------------------------
    def _missing(self, extractor: str) -> MvfxError:
        present = ", ".join(self.extractors()) or "none"
        return MvfxError(f"{self.location}: no features for extractor {extractor!r}; present: {present}")

    def attrs(self, extractor: str) -> dict:
        """Provenance of an extractor's features (without the clip index)."""
        return {k: v for k, v in self.group_attrs(extractor).items() if k != "clip_index"}

    def index(self, extractor: str) -> dict[str, Location]:
        """clip_id -> Location for every committed clip of an extractor."""
        if extractor not in self._index:
            ci = {**EMPTY_INDEX, **self.group_attrs(extractor).get("clip_index", {})}
            checksums = ci["checksum"] or [""] * len(ci["clip_id"])
            index = {
                c: Location(int(n), offset=int(o), checksum=k)
                for c, o, n, k in zip(ci["clip_id"], ci["offset"], ci["count"], checksums)
            }
            for part_id, attrs in self.parts(extractor):
                index.setdefault(attrs["clip_id"], Location(int(attrs["rows"]), part=part_id, checksum=attrs.get("checksum", "")))
            self._index[extractor] = index
        return self._index[extractor]

    def clips(self) -> pd.DataFrame:
        """The clips table, plus the records that committed parts carry: a run stopped (a crash, a full disk)
        after committing a clip but before rewriting the table loses nothing, for readers and writers alike."""
        table = self.clips_table()
        carried: dict[str, dict] = {}
        for name in self.extractors():
            for _, attrs in self.parts(name):
                if attrs.get("clip") and attrs["clip_id"] not in carried:
                    carried[attrs["clip_id"]] = {"status": "ok", **attrs["clip"]}
        missing = [record for clip_id, record in sorted(carried.items()) if clip_id not in set(table["clip_id"])]
        if not missing:
            return table
        return pd.concat([table, to_frame(to_columns(missing, CLIP_COLUMNS), CLIP_COLUMNS)], ignore_index=True)

    def clip_ids(self, extractor: str | None = None) -> list[str]:
        """Clips in the clips table, or those with committed features of ``extractor``."""
        if extractor is not None:
            return sorted(self.index(extractor))
        return sorted(self.clips()["clip_id"].tolist())

    def read(self, extractor: str, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(values [T, D], times [T, 2]) of one clip."""
        loc = self.index(extractor).get(clip_id)
        if loc is None:
            raise MvfxError(f"{self.location}: no {extractor} features for clip {clip_id!r}")
        return self.read_rows(extractor, loc)

    def summary(self) -> dict:
        """The numbers `mvfx store info --json` prints."""
        extractors = {}
        for name in self.extractors():
            index, attrs = self.index(name), self.attrs(name)
            extractors[name] = {
                "dim": attrs["dim"],
                "version": attrs["version"],
                "clips": len(index),
                "rows": int(sum(loc.count for loc in index.values())),
                "weights": attrs.get("weights", "none"),
                "uncompacted_parts": sum(1 for loc in index.values() if loc.part),
            }
        clips = self.clips()
        damaged = pd.to_numeric(clips.get("damaged_packets", pd.Series(dtype=float)), errors="coerce").fillna(0)
        return {"clips": len(clips), "extractors": extractors, "failures": len(self.failures()),
                "damaged_clips": int((damaged > 0).sum())}

    def verify(self) -> list[str]:
        """Every problem found: dim 0, index vs arrays, shapes, time order, NaN (unless allowed), Inf (always), checksums, clips table."""
        problems = []
        known = set(self.clips()["clip_id"])
        for name in self.extractors():
            attrs = self.group_attrs(name)
            if attrs.get("dim") == 0:
                problems.append(f"{name}: dim 0, a feature set without features")
            ci = {**EMPTY_INDEX, **attrs.get("clip_index", {})}
            lengths = {k: len(v) for k, v in ci.items() if k != "checksum" or v}
            if len(set(lengths.values())) > 1:
                problems.append(f"{name}: clip_index columns differ in length {lengths}")
                continue
            if len(set(ci["clip_id"])) != len(ci["clip_id"]):
                problems.append(f"{name}: a clip appears twice in clip_index")
            spans = sorted(zip(ci["offset"], ci["count"], ci["clip_id"]))
            end, rows = 0, self.compacted_rows(name)
            for offset, count, clip_id in spans:
                if offset < end:
                    problems.append(f"{name}/{clip_id}: rows [{offset}, {offset + count}) overlap another clip")
                if offset + count > rows:
                    problems.append(f"{name}/{clip_id}: rows [{offset}, {offset + count}) beyond the {rows} stored rows")
                end = max(end, offset + count)
            for clip_id, loc in self.index(name).items():
                problems.extend(f"{name}/{clip_id}: {p}" for p in self._verify_clip(name, attrs, loc))
                if clip_id not in known:
                    problems.append(f"{name}/{clip_id}: clip missing from the clips table")
        return problems

    def _verify_clip(self, name: str, attrs: dict, loc: Location) -> list[str]:
        try:
            values, times = self.read_rows(name, loc)
        except Exception as exc:  # an unreadable chunk is exactly what verify must report
            return [f"unreadable ({type(exc).__name__}: {exc})"]
        problems = []
        if values.shape != (loc.count, attrs["dim"]) or times.shape != (loc.count, 2):
            problems.append(f"shapes values {values.shape}, times {times.shape}; expected ({loc.count}, {attrs['dim']})")
        if not np.isfinite(times).all() or np.any(times[:, 1] < times[:, 0]) or np.any(np.diff(times[:, 0]) < 0):
            problems.append("times are not finite, not increasing, or end before they start")
        if not attrs.get("nan_allowed", False) and np.isnan(values).any():
            problems.append("values hold NaN")
        if np.isinf(values).any():  # nan_allowed allows missing values, never infinite ones
            problems.append(f"values hold Inf ({int(np.isinf(values).sum())} cells)")
        if loc.checksum and values_checksum(values) != loc.checksum:
            problems.append(f"checksum {values_checksum(values)} differs from the recorded {loc.checksum}")
        return problems
