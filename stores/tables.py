"""Column tables (clips, failures) stored as one 1-D array per column."""
from __future__ import annotations

import numpy as np
import pandas as pd
import zarr


def to_columns(records: list[dict], schema: dict[str, str]) -> dict[str, np.ndarray]:
    """Records -> column arrays with the schema's dtypes (strings as Python str objects)."""
    cols = {}
    for name, dtype in schema.items():
        empty = "" if dtype == "str" else 0
        values = [empty if _missing(r.get(name)) else r[name] for r in records]
        cols[name] = np.array(values, dtype=object if dtype == "str" else dtype)
    return cols


def _missing(value) -> bool:
    """Absent, None or NaN: a column that older rows do not have (e.g. one added in a later format)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def write_zarr_table(group: zarr.Group, records: list[dict], schema: dict[str, str]) -> None:
    """Replace every column array of ``group`` (each write is one file per chunk, atomically replaced)."""
    for name, column in to_columns(records, schema).items():
        dtype = str if schema[name] == "str" else column.dtype
        arr = group.create_array(name, shape=column.shape, dtype=dtype, chunks=(max(1, len(column)),), overwrite=True)
        if len(column):
            arr[:] = column
    group.attrs["columns"] = list(schema)


def to_frame(columns: dict[str, np.ndarray], schema: dict[str, str]) -> pd.DataFrame:
    """A table with the schema's column order and dtypes, whichever backend it came from."""
    return pd.DataFrame(
        {name: pd.Series(columns.get(name, []), dtype="str" if dtype == "str" else dtype) for name, dtype in schema.items()}
    )


def read_zarr_table(group: zarr.Group, schema: dict[str, str]) -> pd.DataFrame:
    return to_frame({n: group[n][:] for n in schema if n in group}, schema)
