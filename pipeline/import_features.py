"""Import features computed elsewhere (a collaborator, a published dataset): one CSV per clip, one row per step.

The file stem is the clip id. Rows are timed by a time column (the start of
each row; a row ends where the next starts, the last one a median step
later) or by a fixed ``hop`` (row k covers [k*hop, (k+1)*hop)). Every other
column is a named feature.

Headers as published are often broken (MuVi's emobase CSVs: one name repeated
for every feature, an index column, text columns such as ``liveturn_0``).
Header cells are read as they are, never renamed the way pandas renames
repeats (``name.1``, ``name.2``): a leading unnamed index column (0, 1, 2...)
is dropped; ``drop_columns`` drops others; ``names_from`` takes the feature
names from an mvfx extractor (``emobase``: openSMILE's 988 names) when the
counts agree. What is still wrong (repeated names, text columns) is one line
naming the first file, the columns and the fix.

An import is all or nothing for the store's layout: files are checked and
staged first, and only if at least one is good is the feature set
registered and are its clips committed; an import that stores nothing
leaves nothing behind (not even a new store), so the corrected retry works.
The source folder is provenance (``source``), not configuration: importing
the same files from another place is the same feature set.
"""
from __future__ import annotations

import csv
import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.extractors import create
from mvfx.media.errors import MvfxError, one_line
from mvfx.media.names import printable
from mvfx.stores import StagedPart, open_writer

INDEX_NAMES = ("", "Unnamed: 0", "index")


@dataclass(frozen=True)
class Layout:
    """Which CSV columns (by position) hold the time and the features, and the features' names."""

    header: tuple[str, ...]
    index_column: int | None  # an unnamed leading 0, 1, 2... column, dropped
    time_index: int | None
    feature_index: tuple[int, ...]
    names: tuple[str, ...]


@dataclass
class ImportResult:
    imported: int = 0
    problems: list[str] = field(default_factory=list)


def read_header(path: Path) -> tuple[str, ...]:
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), []))


def plan_layout(header: tuple[str, ...], path: Path, time_column: str | None, drop_columns: tuple[str, ...],
                names_from: list[str] | None) -> Layout:
    """The layout of the files, or a one-line error naming what is wrong and how to fix it."""
    dropped = set(drop_columns)
    keep = [i for i, name in enumerate(header) if name not in dropped]
    index_column = None
    if keep and keep[0] == 0 and header[0] in INDEX_NAMES:
        index_column, keep = 0, keep[1:]  # pandas' index column (checked to count 0, 1, 2... when read)
    time_index = None
    if time_column is not None:
        matches = [i for i in keep if header[i] == time_column]
        if not matches:
            raise MvfxError(f"{path}: no {time_column!r} column; name it with --time-column or give a fixed --hop")
        time_index = matches[0]
        keep.remove(time_index)
    names = [header[i] for i in keep]
    if names_from is not None:
        if len(names_from) != len(names):
            raise MvfxError(f"{path}: {len(names)} feature columns but --names-from gives {len(names_from)} names; "
                            "drop the extra columns with --drop-columns")
        names = list(names_from)
    repeated = [(n, c) for n, c in Counter(names).most_common(3) if c > 1]
    if repeated:
        listed = ", ".join(f"{n!r} x{c}" for n, c in repeated)
        raise MvfxError(f"{path}: column names repeat ({listed}); give the names with --names-from EXTRACTOR "
                        "(e.g. emobase) or fix the header; mvfx never stores renamed copies like 'name.1'")
    return Layout(header, index_column, time_index, tuple(keep), tuple(names))


def _read(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """(values [T, D] float32, start times or None) of one file, positions as in the layout."""
    header = read_header(path)
    if header != layout.header:
        raise MvfxError(f"{path}: header differs from the other files' ({_first_difference(header, layout.header)})")
    frame = pd.read_csv(path, header=None, skiprows=1, dtype=str, keep_default_na=False)
    if frame.shape[1] != len(layout.header):
        raise MvfxError(f"{path}: rows have {frame.shape[1]} fields, the header {len(layout.header)}")
    numeric = frame.apply(lambda column: pd.to_numeric(column.str.strip().replace("", "nan"), errors="coerce"))
    missing = frame.apply(lambda column: column.str.strip().str.lower().isin(["", "nan"]))
    text = [layout.header[i] or f"column {i}" for i in layout.feature_index if (numeric[i].isna() & ~missing[i]).any()]
    if text:
        raise MvfxError(f"{path}: non-numeric columns {', '.join(text[:3])}{' ...' if len(text) > 3 else ''}; "
                        "drop them with --drop-columns")
    if layout.index_column is not None and not np.array_equal(numeric[layout.index_column].to_numpy(), np.arange(len(frame))):
        raise MvfxError(f"{path}: the first column has no name but is not an index 0, 1, 2...; name it or drop it")
    values = numeric[list(layout.feature_index)].to_numpy(dtype=np.float32)
    starts = numeric[layout.time_index].to_numpy(dtype=np.float64) if layout.time_index is not None else None
    return values, starts


def _first_difference(header: tuple[str, ...], expected: tuple[str, ...]) -> str:
    for i, (got, want) in enumerate(zip(header, expected)):
        if got != want:
            return f"column {i + 1} is {got!r}, not {want!r}"
    return f"{len(header)} columns, not {len(expected)}"


def _times(starts: np.ndarray | None, n: int, hop: float | None, path: Path) -> np.ndarray:
    if starts is None:
        first = np.arange(n) * hop
        return np.stack([first, first + hop], axis=1)
    if len(starts) > 1 and np.any(np.diff(starts) <= 0):
        raise MvfxError(f"{path}: the time column is not strictly increasing")
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 0.0
    return np.stack([starts, np.append(starts[1:], starts[-1] + step)], axis=1)


def import_feature_csvs(
    folder: str | Path, name: str, store: str | Path, time_column: str = "time", hop: float | None = None,
    break_lock: bool = False, drop_columns: tuple[str, ...] = (), names_from: str | None = None,
) -> ImportResult:
    """Import every ``*.csv`` of ``folder`` as feature set ``name`` (see the module docstring).

    ``names_from``: an extractor whose feature names replace the header's (e.g. "emobase").
    """
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise MvfxError(f"{printable(str(folder))}: no .csv files to import")
    headers = Counter(read_header(f) for f in files)
    header = headers.most_common(1)[0][0]  # the layout most files share; the others are reported
    first = next(f for f in files if read_header(f) == header)
    names = create(names_from).feature_names if names_from else None
    layout = plan_layout(header, first, None if hop is not None else time_column, drop_columns, names)
    store_existed = Path(store).exists()
    try:
        return _import(files, layout, name, store, time_column, hop, break_lock, folder)
    except MvfxError:
        if not store_existed:  # nothing imported into a store made for it: leave no store behind
            shutil.rmtree(store, ignore_errors=True)
        raise


def _import(files: list[Path], layout: Layout, name: str, store: str | Path, time_column: str, hop: float | None,
            break_lock: bool, folder: str | Path) -> ImportResult:
    """Stage every good file, then (only if one was good) register the feature set and commit."""
    with open_writer(store, break_lock=break_lock) as writer:
        staged: list[tuple[StagedPart, str, Path, float]] = []
        failed: list[tuple[str, str, str]] = []
        staging = writer.staging()
        for path in files:
            clip_id = printable(path.stem)
            try:
                values, starts = _read(path, layout)
                if len(values) == 0:
                    raise MvfxError(f"{path}: no rows")
                times = _times(starts, len(values), hop, path)
                part = staging.stage(name, clip_id, values, times, "float32")
                staged.append((part, clip_id, path, float(times[-1, 1])))
            except (MvfxError, ValueError, pd.errors.ParserError) as exc:
                message = str(exc) if isinstance(exc, MvfxError) else f"{path}: {one_line(exc)}"
                failed.append((clip_id, type(exc).__name__, printable(message)))
        if not staged:
            more = f" (and {len(failed) - 1} more files)" if len(failed) > 1 else ""
            raise MvfxError(f"nothing imported: {failed[0][2]}{more}")
        writer.register_extractor(_description(name, layout, folder, time_column, hop))
        for part, clip_id, path, end in staged:
            writer.commit(part)
            writer.clear_failures(clip_id, [name])
            if clip_id not in writer.known_clips():  # features of clips mvfx never saw: their duration is the last row's end
                writer.set_clip({"clip_id": clip_id, "path": printable(str(path.resolve())), "status": "ok", "duration_s": end})
        for clip_id, error, message in failed:
            writer.add_failure(clip_id, name, "import", error, message)
        writer.compact()
    return ImportResult(len(staged), [message for _, _, message in failed])


def _description(name: str, layout: Layout, folder: str | Path, time_column: str, hop: float | None) -> dict:
    return {
        "extractor": name, "version": "imported", "modality": "imported", "dim": len(layout.names),
        "value_shape": [len(layout.names)], "feature_names": list(layout.names), "nan_allowed": True,
        "weights": "none", "weights_files": {}, "time_grid": {"kind": "window", "window_s": hop, "hop_s": hop},
        "config": {"time_column": None if hop is not None else time_column, "hop_s": hop},
        "source": printable(str(Path(folder).resolve())),
        "input": {"kind": "imported CSV"}, "library_versions": {"mvfx": version("mvfx"), "pandas": version("pandas")},
    }
