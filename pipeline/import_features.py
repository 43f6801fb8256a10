"""Import features computed elsewhere: one CSV per clip, one row per time step.

The file stem is the clip id. Rows are timed by a time column (the start of
each row; a row ends where the next starts, the last one a median step
later) or by a fixed ``hop`` (row k covers [k*hop, (k+1)*hop)). Every other
column is a named feature; files whose columns differ from the layout most files share are
reported and skipped. The
features are committed through the same staged-part path as extraction,
and their provenance says they were imported and from where.
"""
from __future__ import annotations

from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import MvfxError, one_line
from stores import open_writer
from stores.zarr_store import stage_part


def _times(frame: pd.DataFrame, time_column: str | None, hop: float | None, path: Path) -> np.ndarray:
    if hop is not None:
        starts = np.arange(len(frame)) * hop
        return np.stack([starts, starts + hop], axis=1)
    starts = frame[time_column].to_numpy(dtype=np.float64)
    if len(starts) > 1 and np.any(np.diff(starts) <= 0):
        raise MvfxError(f"{path}: column {time_column!r} is not strictly increasing")
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 0.0
    return np.stack([starts, np.append(starts[1:], starts[-1] + step)], axis=1)


def import_feature_csvs(
    folder: str | Path, name: str, store: str | Path, time_column: str = "time", hop: float | None = None,
    break_lock: bool = False,
) -> tuple[int, list[str]]:
    """Import every ``*.csv`` of ``folder`` as extractor ``name``; returns (clips imported, problems)."""
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        raise MvfxError(f"{folder}: no .csv files to import")
    headers = Counter(tuple(pd.read_csv(f, nrows=0).columns) for f in files)
    columns = list(headers.most_common(1)[0][0])  # the layout most files share; the others are reported
    if hop is None and time_column not in columns:
        raise MvfxError(f"{folder}: no {time_column!r} column; name it with --time-column or give a fixed --hop")
    names = [c for c in columns if hop is not None or c != time_column]
    description = {
        "extractor": name, "version": "imported", "modality": "imported", "dim": len(names), "value_shape": [len(names)],
        "feature_names": names, "nan_allowed": True, "weights": "none", "weights_files": {},
        "time_grid": {"kind": "window", "window_s": hop, "hop_s": hop},
        "config": {"source": str(Path(folder).resolve()), "time_column": None if hop is not None else time_column, "hop_s": hop},
        "input": {"kind": "imported CSV"}, "library_versions": {"mvfx": version("mvfx"), "pandas": version("pandas")},
    }
    problems, imported = [], 0
    with open_writer(store, break_lock=break_lock) as writer:
        writer.register_extractor(description)
        for path in files:
            clip_id = path.stem
            try:
                frame = pd.read_csv(path)
                if list(frame.columns) != columns:
                    raise MvfxError(f"{path}: columns {list(frame.columns)} differ from the other files' {columns}")
                values = frame[names].to_numpy(dtype=np.float32)
                staged = stage_part(writer.path, name, clip_id, values, _times(frame, time_column, hop, path), "float32")
            except (MvfxError, ValueError, KeyError, pd.errors.ParserError) as exc:
                message = str(exc) if isinstance(exc, MvfxError) else f"{path}: {one_line(exc)}"
                writer.add_failure(clip_id, name, "import", type(exc).__name__, message)
                problems.append(message)
                continue
            writer.commit(staged)
            writer.clear_failures(clip_id, [name])
            if clip_id not in writer.known_clips():
                writer.set_clip({"clip_id": clip_id, "path": str(path.resolve()), "status": "ok"})
            imported += 1
        writer.compact()
    return imported, problems
