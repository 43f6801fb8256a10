"""The one cross-validation loop of every run: a clone of the head fitted per fold (scikit-learn's ``clone``)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from sklearn.base import clone

from mvfx.heads.estimator import Head

Split = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]


def take(data: Any, rows: np.ndarray) -> Any:
    """Rows of a dataset: a list, an array, or a dict of arrays (one per feature set)."""
    if isinstance(data, dict):
        return {k: take(v, rows) for k, v in data.items()}
    if isinstance(data, list):
        return [data[i] for i in rows]
    return data[rows]


def cross_validate(estimator: Head, x: Any, y: Any, splits: Iterable[Split],
                   row_params: dict[str, Any] | None = None) -> Iterator[tuple[int, Head, np.ndarray]]:
    """(fold, a clone of ``estimator`` fitted on the fold's training rows, its test rows) for each split.

    A split is (train, test), or (train, validation, test) where the early-stopping rows are fixed
    (e.g. a labels file's split column); otherwise each head draws its own validation rows from train.
    ``row_params``: more arguments of ``fit`` with one entry per row (e.g. ``LstmHead``'s
    ``modality_targets``), given the training rows' entries.
    """
    for fold, split in enumerate(splits):
        train, test = split[0], split[-1]
        fit_params = {"validation": (take(x, split[1]), take(y, split[1]) if y is not None else None)} if len(split) == 3 else {}
        fit_params |= {k: take(v, train) for k, v in (row_params or {}).items() if v is not None}
        model = clone(estimator).fit(take(x, train), take(y, train) if y is not None else None, **fit_params)
        yield fold, model, test
