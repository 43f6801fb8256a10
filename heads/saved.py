"""The saved-model format: a fitted head as a folder, and the head restored from one, ready to predict.

A saved head is a folder (format ``mvfx-head`` version 2; version 2 saves an LSTM's layers as one-layer LSTMs,
and a version-1 folder still loads, each head turning the state it saved then into its own, ``Head._upgrade``):

- ``model.json``: kind, format version, constructor parameters, the learned non-array state (class names, the
  label grid's step, ...), and the provenance of every feature set it reads (extractor, version, configuration,
  weights hash, as recorded by the training store: ``provenance``);
- ``state.pt``: tensors only (network weights, standardisation statistics), loaded with
  ``torch.load(weights_only=True)``, so a model file cannot run code.

The format lives here, apart from the estimators (which write no file), as ``joblib.dump`` does for
scikit-learn's: a head gives its state (``Head._tensors``, ``Head._facts``) and takes it back (``Head._restore``).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvfx.heads.estimator import HEADS, Head
from mvfx.media.errors import MvfxError

FORMAT = "mvfx-head"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# the modules (under mvfx.heads) that register the heads ``load_head`` can restore; a saved model names its kind, not its module
HEAD_MODULES = ("models.lasso", "models.lstm", "models.fusion", "models.correspond", "models.mvf")


def save(head: Head, folder: str | Path) -> Path:
    """Write fitted ``head`` into ``folder`` (model.json and state.pt); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(head._tensors(), folder / "state.pt")
    description = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": head.kind, "params": head.get_params(),
                   "facts": head._facts(), "features": getattr(head, "provenance_", {}),
                   "training": getattr(head, "training_", {})}
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
    version = description.get("format_version")
    if description.get("format") != FORMAT or version not in READABLE_VERSIONS:
        raise MvfxError(f"{path}: format {description.get('format')} v{version}; "
                        f"this mvfx reads {FORMAT} v{' and v'.join(map(str, READABLE_VERSIONS))}")
    for module in HEAD_MODULES:  # each registers its heads when imported
        importlib.import_module(f"mvfx.heads.{module}")
    if description.get("kind") not in HEADS:
        raise MvfxError(f"{path}: unknown model kind {description.get('kind')!r}; known: {', '.join(sorted(HEADS))}")
    head = HEADS[description["kind"]](**description["params"])
    head._restore(head._upgrade(torch.load(folder / "state.pt", map_location="cpu", weights_only=True), version), description["facts"])
    head.provenance_, head.training_ = description["features"], description.get("training", {})
    return head


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays in parameters and facts."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot save {type(value).__name__} in model.json")
