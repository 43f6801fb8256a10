"""What every head shares: scikit-learn's conventions, a saved-model format, and feature provenance.

A head is a ``sklearn.base.BaseEstimator``: every hyper-parameter is a
constructor argument, ``fit`` returns self, learned state ends in ``_``, so
``sklearn.base.clone`` gives an unfitted copy per fold (``cross_validate``).

A saved head is a folder (format ``mvfx-head`` version 1):

- ``model.json``: kind, format version, constructor parameters, the learned
  non-array state (class names, the label grid's step, ...), and the
  provenance of every feature set it reads (extractor, version,
  configuration, weights hash, as recorded by the training store);
- ``state.pt``: tensors only (network weights, standardisation statistics),
  loaded with ``torch.load(weights_only=True)``, so a model file cannot run code.

``check_features`` refuses, in one line, features whose provenance differs
from the model's: another extractor version or configuration, or random
weights against a model trained on real ones (and the other way round).
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

FORMAT = "mvfx-head"
FORMAT_VERSION = 1
PROVENANCE_KEYS = ("extractor", "version", "config", "weights", "dim")
HEADS: dict[str, type[Head]] = {}
HEAD_MODULES = ("lasso", "lstm", "classify", "correspond", "mvf")


def register(cls: type[Head]) -> type[Head]:
    HEADS[cls.kind] = cls
    return cls


def feature_provenance(store: FeatureStore, extractors: Iterable[str]) -> dict[str, dict]:
    """What the store recorded about how each feature set was made (the part that must match at prediction)."""
    return {e: {k: store.attrs(e).get(k) for k in PROVENANCE_KEYS} for e in extractors}


def check_features(expected: dict[str, dict], store: FeatureStore, where: str) -> None:
    """Raise one line when ``store``'s features were made differently from those a model was trained on."""
    for extractor, want in expected.items():
        if extractor not in store.extractors():
            raise MvfxError(f"{where}: no {extractor} features (the model reads {', '.join(expected)})")
        have = feature_provenance(store, [extractor])[extractor]
        for key in PROVENANCE_KEYS:
            if have[key] != want[key]:
                if key == "weights" and "random" in (have[key], want[key]):
                    made = "random" if have[key] == "random" else "real"
                    raise MvfxError(f"{where}: {extractor} features come from {made} weights; the model was trained on "
                                    f"{'random' if want[key] == 'random' else 'real'} ones")
                raise MvfxError(f"{where}: {extractor} {key} is {json.dumps(have[key])[:120]}; "
                                f"the model was trained with {json.dumps(want[key])[:120]}")


class Head(BaseEstimator):
    """Base of every head: subclasses define ``kind``, ``fit``, ``predict`` and their state's (de)serialisation."""

    kind: ClassVar[str]
    provenance_: dict[str, dict]  # per feature set: how the training features were made
    training_: dict[str, Any]  # what prediction needs to know of the training data (task, target, label grid step)

    def with_provenance(self, store: FeatureStore, extractors: Iterable[str]) -> Head:
        """Record where the training features came from (saved with the model, checked at prediction)."""
        self.provenance_ = feature_provenance(store, extractors)
        return self

    # --- what subclasses provide ------------------------------------------------------------
    def _tensors(self) -> dict[str, Any]:
        """Learned arrays and weights as tensors (nested dicts and lists allowed)."""
        raise NotImplementedError

    def _facts(self) -> dict[str, Any]:
        """Learned state that is not an array (JSON)."""
        return {}

    def _restore(self, tensors: dict[str, Any], facts: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- the saved format -------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self._tensors(), folder / "state.pt")
        description = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind, "params": self.get_params(),
                       "facts": self._facts(), "features": getattr(self, "provenance_", {}),
                       "training": getattr(self, "training_", {})}
        (folder / "model.json").write_text(json.dumps(description, indent=2, default=_plain))
        return folder


def load_head(folder: str | Path) -> Head:
    """The head saved in ``folder`` (a run folder holds it under ``model/``), fitted and ready to predict."""
    folder = Path(folder)
    if (folder / "model" / "model.json").is_file():
        folder = folder / "model"
    path = folder / "model.json"
    if not path.is_file():
        raise MvfxError(f"{folder}: no saved model (model.json); train one with `mvfx train ...`")
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MvfxError(f"{path}: not a readable model description ({exc.msg})") from None
    if description.get("format") != FORMAT or description.get("format_version") != FORMAT_VERSION:
        raise MvfxError(f"{path}: format {description.get('format')} v{description.get('format_version')}; "
                        f"this mvfx reads {FORMAT} v{FORMAT_VERSION}")
    for module in HEAD_MODULES:  # each registers its heads when imported
        importlib.import_module(f"mvfx.heads.{module}")
    if description.get("kind") not in HEADS:
        raise MvfxError(f"{path}: unknown model kind {description.get('kind')!r}; known: {', '.join(sorted(HEADS))}")
    head = HEADS[description["kind"]](**description["params"])
    head._restore(torch.load(folder / "state.pt", map_location="cpu", weights_only=True), description["facts"])
    head.provenance_, head.training_ = description["features"], description.get("training", {})
    return head


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays in parameters and facts."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot save {type(value).__name__} in model.json")


def tensors(arrays: Iterable[np.ndarray]) -> list[torch.Tensor]:
    return [torch.as_tensor(np.asarray(a)) for a in arrays]


def take(data: Any, rows: np.ndarray) -> Any:
    """Rows of a dataset: a list, an array, or a dict of arrays (one per feature set)."""
    if isinstance(data, dict):
        return {k: take(v, rows) for k, v in data.items()}
    if isinstance(data, list):
        return [data[i] for i in rows]
    return data[rows]


Split = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]


def cross_validate(estimator: Head, x: Any, y: Any, splits: Iterable[Split]) -> Iterator[tuple[int, Head, np.ndarray]]:
    """(fold, a clone of ``estimator`` fitted on the fold's training rows, its test rows) for each split.

    A split is (train, test), or (train, validation, test) where the early-stopping rows are fixed
    (e.g. a labels file's split column); otherwise each head draws its own validation rows from train.
    """
    for fold, split in enumerate(splits):
        train, test = split[0], split[-1]
        fit_params = {"validation": (take(x, split[1]), take(y, split[1]) if y is not None else None)} if len(split) == 3 else {}
        model = clone(estimator).fit(take(x, train), take(y, train) if y is not None else None, **fit_params)
        yield fold, model, test
