"""Import features computed elsewhere (a collaborator, a published dataset): one CSV per clip, one row per step.

The file stem is the clip id. Rows are timed by a time column (the start of
each row; a row ends where the next starts, the last one a median step
later) or by a fixed ``hop`` (row k covers [k*hop, (k+1)*hop)). Every other
column is a named feature.

Headers as published are often broken (MuVi's emobase CSVs: one emobase name
repeated for every column, a different one in each file, an unnamed index
column, text columns of ``liveturn_N`` and ``unassigned`` cells). Header
cells are read as they are, never renamed the way pandas renames repeats
(``name.1``, ``name.2``). Columns are dropped by header name
(``drop_columns``), by 1-based position (``drop_positions``), or, with
``drop_text_columns``, every column of the first file that holds text and no
number; a leading unnamed index column (0, 1, 2...) is dropped by itself.
``names_from`` takes the feature names from an mvfx extractor (``emobase``:
openSMILE's 988 names) when the counts agree; the header cells are then not
compared between files, only their number. Names, positions and text columns
are found in the first file with the most common header (with ``names_from``:
column count) and dropped at the same positions in every file.

Nothing is stored silently wrong: a file with a row of the wrong length, a
cell that is not a number, an infinite value or, with a time column, a
single row (its length is unknown) is skipped with a one-line reason naming
the line and column; NaN (an empty cell, ``nan``) is kept as missing.

An import is all or nothing for the store's layout: the feature set is
registered only when the first good file is in hand, and an import that
stores nothing leaves nothing behind (not even a new store), so the
corrected retry works. Good files are appended in batches straight into the
store's arrays (the importer is the store's only writer, so nothing is
staged). Importing the same folder again skips the files imported before and
unchanged (the store keeps each file's crc32; ``skipped`` in the result); a
file whose features differ from those stored is refused, never mixed in.
The source folder is provenance (``source``), not configuration: importing
the same files from another place is the same feature set.
"""
from __future__ import annotations

import csv
import shutil
import zlib
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.extractors import create
from mvfx.media.errors import MvfxError, one_line
from mvfx.media.names import printable
from mvfx.stores import open_writer

IMPORT_BATCH = 256  # files parsed, then appended and published together
INDEX_NAMES = ("", "Unnamed: 0", "index")
MISSING = ("", "nan")


@dataclass(frozen=True)
class Layout:
    """Which CSV columns (by position) hold the time and the features, and the features' names."""

    header: tuple[str, ...]
    index_column: int | None  # an unnamed leading 0, 1, 2... column, dropped
    time_index: int | None
    feature_index: tuple[int, ...]
    names: tuple[str, ...]
    same_header: bool = True  # every file must repeat the header; False with --names-from: only the column count

    def label(self, column: int) -> str:
        """How messages name a column: its 1-based position (as --drop-positions counts) and the name it has or is stored under."""
        name = self.names[self.feature_index.index(column)] if column in self.feature_index else self.header[column]
        return f"{column + 1} ({name[:40]!r})"


@dataclass(frozen=True)
class Cells:
    """One file's data rows as text, their numbers (NaN where none), where a cell is text, and each row's line."""

    text: np.ndarray  # [T, C] str, stripped
    numbers: np.ndarray  # [T, C] float64
    not_numbers: np.ndarray  # [T, C] bool: neither a number nor missing (empty, nan)
    lines: list[int]

    def text_columns(self) -> list[int]:
        """Columns that hold text and no number (e.g. MuVi's liveturn_N and unassigned)."""
        return np.flatnonzero(self.not_numbers.any(axis=0) & np.isnan(self.numbers).all(axis=0)).tolist()


@dataclass
class ImportResult:
    """Clips imported, one line per skipped file, and notes for the user (e.g. which text columns were dropped)."""

    imported: int = 0
    skipped: int = 0  # files imported before and unchanged
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_header(path: Path) -> tuple[str, ...]:
    with open(path, newline="") as f:
        return tuple(next(csv.reader(f), []))


def read_cells(path: Path, width: int) -> Cells:
    """The data rows of a file whose header has ``width`` columns; a row of another length is a one-line error."""
    rows, lines = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if not row:  # a blank line
                continue
            if len(row) != width:
                raise MvfxError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {width}; "
                                "mvfx never pads or cuts a row")
            rows.append(row)
            lines.append(reader.line_num)
    if not rows:
        raise MvfxError(f"{path}: no rows")
    cells = pd.Series([cell for row in rows for cell in row], dtype=str).str.strip()  # one flat column: fast for 990 columns
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    not_numbers = np.isnan(numbers) & ~cells.str.lower().isin(MISSING).to_numpy()
    shape = (len(rows), width)
    return Cells(cells.to_numpy().reshape(shape), numbers.reshape(shape), not_numbers.reshape(shape), lines)


def drop_set(header: tuple[str, ...], path: Path, drop_columns: tuple[str, ...], drop_positions: tuple[int, ...]) -> set[int]:
    """The 0-based positions that ``drop_columns`` (header names) and ``drop_positions`` (1-based) name; any
    name or position that matches no column is a one-line error, never ignored."""
    unknown = [repr(name) for name in drop_columns if name not in header]
    unknown += [f"position {p}" for p in drop_positions if not 1 <= p <= len(header)]
    if unknown:
        raise MvfxError(f"{path}: nothing to drop at {', '.join(unknown)} (the header has {len(header)} columns); "
                        "--drop-columns takes header names, --drop-positions 1-based positions; "
                        "for columns of text cells (e.g. liveturn_0) use --drop-text-columns")
    return {i for i, name in enumerate(header) if name in drop_columns} | {p - 1 for p in drop_positions}


def plan_layout(header: tuple[str, ...], path: Path, time_column: str | None, dropped: set[int],
                names_from: list[str] | None) -> Layout:
    """The layout of the files, or a one-line error naming what is wrong and how to fix it."""
    keep = [i for i in range(len(header)) if i not in dropped]
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
    if not keep:
        raise MvfxError(f"{path}: no feature column left of the {len(header)} columns; drop fewer")
    names = [header[i] for i in keep]
    if names_from is not None:
        if len(names_from) != len(names):
            raise MvfxError(f"{path}: {len(names)} feature columns but --names-from gives {len(names_from)} names; "
                            "drop the extra columns with --drop-columns NAME, --drop-positions N or --drop-text-columns")
        names = list(names_from)
    repeated = [(n, c) for n, c in Counter(names).most_common(3) if c > 1]
    if repeated:
        listed = ", ".join(f"{n!r} x{c}" for n, c in repeated)
        raise MvfxError(f"{path}: column names repeat ({listed}); give the names with --names-from EXTRACTOR "
                        "(e.g. emobase) or fix the header; mvfx never stores renamed copies like 'name.1'")
    return Layout(header, index_column, time_index, tuple(keep), tuple(names), same_header=names_from is None)


def _check_header(path: Path, header: tuple[str, ...], layout: Layout) -> None:
    if layout.same_header and header != layout.header:
        raise MvfxError(f"{path}: header differs from the other files' ({_first_difference(header, layout.header)})")
    if len(header) != len(layout.header):
        raise MvfxError(f"{path}: {len(header)} columns, not {len(layout.header)} like the other files")


def _check_numbers(path: Path, cells: Cells, layout: Layout) -> None:
    """Text columns are named (drop them); a bad cell in a column of numbers is named by line and column."""
    used = [*layout.feature_index, *([] if layout.time_index is None else [layout.time_index])]
    text = [layout.label(i) for i in cells.text_columns() if i in used]
    if text:
        raise MvfxError(f"{path}: non-numeric columns {', '.join(text[:3])}{' ...' if len(text) > 3 else ''}; "
                        "drop them with --drop-columns, --drop-positions or --drop-text-columns")
    bad = cells.not_numbers[:, used]
    if bad.any():
        row, k = np.argwhere(bad)[0]
        raise MvfxError(f"{path}: line {cells.lines[row]}, column {layout.label(used[k])}: "
                        f"{cells.text[row, used[k]][:40]!r} is not a number")


def _check_finite(path: Path, cells: Cells, values: np.ndarray, layout: Layout) -> None:
    """An infinite value (or one beyond float32) is refused by line and column: NaN is the only missing value."""
    infinite = np.isinf(values)
    if infinite.any():
        row, k = np.argwhere(infinite)[0]
        column = layout.feature_index[k]
        raise MvfxError(f"{path}: line {cells.lines[row]}, column {layout.label(column)}: {cells.text[row, column][:40]!r} "
                        "is infinite or beyond float32; mvfx stores finite numbers or NaN (an empty cell)")


def _read(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """(values [T, D] float32, start times or None) of one file, positions as in the layout."""
    _check_header(path, read_header(path), layout)
    cells = read_cells(path, len(layout.header))
    _check_numbers(path, cells, layout)
    if layout.index_column is not None and not np.array_equal(cells.numbers[:, layout.index_column], np.arange(len(cells.lines))):
        raise MvfxError(f"{path}: the first column has no name but is not an index 0, 1, 2...; name it or drop it")
    with np.errstate(over="ignore"):  # beyond float32 becomes Inf, refused below
        values = cells.numbers[:, layout.feature_index].astype(np.float32)
    _check_finite(path, cells, values, layout)
    return values, None if layout.time_index is None else _starts(path, cells, layout.time_index)


def _starts(path: Path, cells: Cells, column: int) -> np.ndarray:
    """The rows' start times: finite and strictly increasing, and at least two (one row's length is unknown)."""
    starts = cells.numbers[:, column]
    if not np.isfinite(starts).all():
        row = int(np.argmin(np.isfinite(starts)))
        raise MvfxError(f"{path}: line {cells.lines[row]}: the time {cells.text[row, column][:40]!r} is not a finite number")
    back = np.flatnonzero(np.diff(starts) <= 0)
    if back.size:
        raise MvfxError(f"{path}: line {cells.lines[back[0] + 1]}: the time column is not strictly increasing")
    if len(starts) == 1:
        raise MvfxError(f"{path}: one row with a time column, so the row's length is unknown; import with a fixed --hop SECONDS "
                        "(and --drop-columns for the time column)")
    return starts


def _first_difference(header: tuple[str, ...], expected: tuple[str, ...]) -> str:
    for i, (got, want) in enumerate(zip(header, expected)):
        if got != want:
            return f"column {i + 1} is {got!r}, not {want!r}"
    return f"{len(header)} columns, not {len(expected)}"


def _times(starts: np.ndarray | None, n: int, hop: float | None) -> np.ndarray:
    """[T, 2] start and end of each row: a fixed hop, or each start to the next (the last a median step on)."""
    if starts is None:
        first = np.arange(n) * hop
        return np.stack([first, first + hop], axis=1)
    step = float(np.median(np.diff(starts)))
    return np.stack([starts, np.append(starts[1:], starts[-1] + step)], axis=1)


def _dropped_text(path: Path, header: tuple[str, ...], dropped: set[int]) -> tuple[set[int], str | None]:
    """The text columns of ``path`` not dropped already, and the note that names them (position, a cell)."""
    cells = read_cells(path, len(header))
    text = [i for i in cells.text_columns() if i not in dropped]
    if not text:
        return set(), None
    shown = ", ".join(f"{i + 1} (e.g. {cells.text[0, i][:20]!r})" for i in text[:5])
    return set(text), f"--drop-text-columns dropped columns {shown}{f' ... ({len(text)} in all)' if len(text) > 5 else ''} of {path.name}"


def import_feature_csvs(
    folder: str | Path, name: str, store: str | Path, time_column: str = "time", hop: float | None = None,
    break_lock: bool = False, drop_columns: tuple[str, ...] = (), names_from: str | None = None,
    drop_positions: tuple[int, ...] = (), drop_text_columns: bool = False,
) -> ImportResult:
    """Import every ``*.csv`` of ``folder`` as feature set ``name`` (see the module docstring).

    ``names_from``: an extractor whose feature names replace the header's (e.g. "emobase").
    """
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise MvfxError(f"{printable(str(folder))}: no .csv files to import")
    headers = {f: read_header(f) for f in files}
    shape = len if names_from else tuple  # with --names-from the header's cells do not matter, only their number
    common = Counter(shape(h) for h in headers.values()).most_common(1)[0][0]  # the layout most files share
    first = next(f for f in files if shape(headers[f]) == common)
    header = headers[first]
    dropped = drop_set(header, first, drop_columns, drop_positions)
    notes = []
    if drop_text_columns:
        text, note = _dropped_text(first, header, dropped)
        dropped |= text
        notes += [note] if note else []
    names = create(names_from).feature_names if names_from else None
    layout = plan_layout(header, first, None if hop is not None else time_column, dropped, names)
    store_existed = Path(store).exists()
    try:
        result = _import(files, layout, name, store, time_column, hop, break_lock, folder)
    except MvfxError:
        if not store_existed:  # nothing imported into a store made for it: leave no store behind
            shutil.rmtree(store, ignore_errors=True)
        raise
    result.notes = notes
    return result


def _import(files: list[Path], layout: Layout, name: str, store: str | Path, time_column: str, hop: float | None,
            break_lock: bool, folder: str | Path) -> ImportResult:
    """Append every good file straight into the store (this process is its only writer: nothing is staged),
    ``IMPORT_BATCH`` files at a time; the feature set is registered at the first good file, so an import with
    none leaves the store as it was. Files imported before and unchanged are skipped."""
    result = ImportResult()
    failed: list[tuple[str, str, str]] = []
    with open_writer(store, break_lock=break_lock) as writer:
        description = _description(name, layout, folder, time_column, hop)
        stamps = writer.source_stamps(name) if name in writer.extractors() else {}
        done = writer.done(name) if name in writer.extractors() else ()
        batch: list[tuple[str, np.ndarray, np.ndarray, Path]] = []
        new_stamps: dict[str, str] = {}
        for path in files:
            clip_id = printable(path.stem)
            try:
                stamp = f"crc32:{zlib.crc32(path.read_bytes()):08x}"
                if stamps.get(clip_id) == stamp:
                    result.skipped += 1
                    continue
                values, starts = _read(path, layout)
                times = _times(starts, len(values), hop)
            except (MvfxError, ValueError, csv.Error, OSError) as exc:
                message = str(exc) if isinstance(exc, MvfxError) else f"{path}: {one_line(exc)}"
                failed.append((clip_id, type(exc).__name__, printable(message)))
                continue
            if clip_id in done:  # imported before this store kept file stamps, or from another file
                if writer.read(name, clip_id)[0].tobytes() != values.tobytes():
                    failed.append((clip_id, "ClipChanged", f"{path}: differs from the {name} features this store "
                                   "already holds for it; import into a new feature set name or store"))
                    continue
                result.skipped += 1
            else:
                batch.append((clip_id, values, times, path))
            new_stamps[clip_id] = stamp
            if len(batch) >= IMPORT_BATCH:
                result.imported += _append(writer, description, batch)
        result.imported += _append(writer, description, batch)
        if not result.imported and not result.skipped:
            more = f" (and {len(failed) - 1} more files)" if len(failed) > 1 else ""
            raise MvfxError(f"nothing imported: {failed[0][2]}{more}")
        writer.add_source_stamps(name, new_stamps)
        for clip_id, error, message in failed:
            writer.add_failure(clip_id, name, "import", error, message)
    result.problems = [message for _, _, message in failed]
    return result


def _append(writer, description: dict, batch: list[tuple[str, np.ndarray, np.ndarray, Path]]) -> int:
    """Register the feature set (once; refused if it was made differently), write ``batch`` and empty it.
    Clips mvfx never saw get a clips-table record, their duration the last row's end."""
    if not batch:
        return 0
    name = description["extractor"]
    writer.register_extractor(description)
    written = writer.append(name, [(clip_id, values, times) for clip_id, values, times, _ in batch])
    for clip_id, _, times, path in batch:
        writer.clear_failures(clip_id, [name])
        if clip_id not in writer.known_clips():
            writer.set_clip({"clip_id": clip_id, "path": printable(str(path.resolve())), "status": "ok",
                             "duration_s": float(times[-1, 1])})
    batch.clear()
    return written


def _description(name: str, layout: Layout, folder: str | Path, time_column: str, hop: float | None) -> dict:
    return {
        "extractor": name, "version": "imported", "modality": "imported", "dim": len(layout.names),
        "value_shape": [len(layout.names)], "feature_names": list(layout.names), "nan_allowed": True,
        "weights": "none", "weights_files": {}, "time_grid": {"kind": "window", "window_s": hop, "hop_s": hop},
        "config": {"time_column": None if hop is not None else time_column, "hop_s": hop},
        "source": printable(str(Path(folder).resolve())),
        "input": {"kind": "imported CSV"}, "library_versions": {"mvfx": version("mvfx"), "pandas": version("pandas")},
    }
