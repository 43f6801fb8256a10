"""What every head shares: scikit-learn's conventions, a saved-model format, and feature provenance.

A head is a ``sklearn.base.BaseEstimator``: every hyper-parameter is a
constructor argument, ``fit`` returns self, learned state ends in ``_``, so
``sklearn.base.clone`` gives an unfitted copy per fold (``cross_validate``).

A saved head is a folder (format ``mvfx-head`` version 2; version 2 saves an LSTM's layers as one-layer LSTMs,
and a version-1 folder still loads, each head turning the state it saved then into its own, ``_upgrade``):

- ``model.json``: kind, format version, constructor parameters, the learned
  non-array state (class names, the label grid's step, ...), and the
  provenance of every feature set it reads (extractor, version,
  configuration, weights hash, as recorded by the training store);
- ``state.pt``: tensors only (network weights, standardisation statistics),
  loaded with ``torch.load(weights_only=True)``, so a model file cannot run code.

``check_features`` refuses, in one line, features whose provenance differs
from the model's: another extractor version or configuration, or random
weights against a model trained on real ones (and the other way round).

Every head declares what each parameter may be in ``_parameter_constraints``
(scikit-learn's convention, with this module's small ``Rule``s) and checks
them first thing in ``fit``: a bad value is one line naming the parameter,
not an error deep inside torch. Configuration dataclasses are built from the
head's attributes by field name (``by_name``), never by position.

A fitted head applies itself to a store's clips (``predict_clips``, one clip
at a time, see ``application``, into the columns ``prediction_columns``
declares) and draws a clip's time line (``draw_timeline``); ``mvfx predict``
only streams clips through it.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Iterable, Iterator
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader, StoreClip
from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

FORMAT = "mvfx-head"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PROVENANCE_KEYS = ("extractor", "version", "config", "weights", "dim")
HEADS: dict[str, type[Head]] = {}
# the modules (under mvfx.heads) that register the heads ``load_head`` can restore; a saved model names its kind, not its module
HEAD_MODULES = ("models.lasso", "models.lstm", "models.fusion", "models.correspond", "models.mvf")


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
        if have["weights"] == "simulated":
            raise MvfxError(f"{where}: {extractor} rows come from the simulated GPU (--device sim): placeholders, not "
                            "features; extract them again with --device cpu or cuda")
        for key in PROVENANCE_KEYS:
            if have[key] != want[key]:
                if key == "weights" and "random" in (have[key], want[key]):
                    made = "random" if have[key] == "random" else "real"
                    raise MvfxError(f"{where}: {extractor} features come from {made} weights; the model was trained on "
                                    f"{'random' if want[key] == 'random' else 'real'} ones")
                raise MvfxError(f"{where}: {extractor} {key} is {json.dumps(have[key])[:120]}; "
                                f"the model was trained with {json.dumps(want[key])[:120]}")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One kind of value a parameter may take (``test``), and how an error message names it (``text``)."""

    text: str
    test: Callable[[Any], bool]


def interval(kind: type, low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False) -> Rule:
    """An int (``kind=int``) or a number (``kind=float``) between ``low`` and ``high`` (None: unbounded); never a bool."""
    number = Integral if kind is int else Real

    def test(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, number):
            return False
        above = low is None or (value > low if low_open else value >= low)
        return above and (high is None or (value < high if high_open else value <= high))

    left = "(" if low is None or low_open else "["
    right = ")" if high is None or high_open else "]"
    bounds = f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"
    return Rule(f"{'an int' if kind is int else 'a number'} in {bounds}", test)


def options(*values: str) -> Rule:
    """One of the strings ``values``."""
    return Rule(f"one of {', '.join(map(repr, values))}", lambda value: isinstance(value, str) and value in values)


def _names(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0 and all(isinstance(v, str) and v for v in value)


NONE = Rule("None", lambda value: value is None)
BOOL = Rule("a bool", lambda value: isinstance(value, bool | np.bool_))
TEXT = Rule("a non-empty str", lambda value: isinstance(value, str) and bool(value))
PATH = Rule("a path", lambda value: isinstance(value, str | Path) and bool(str(value)))
NAMES = Rule("a non-empty list of feature names", _names)
NAME_SETS = Rule("a non-empty list of non-empty lists of feature names",
                 lambda value: isinstance(value, list | tuple) and len(value) > 0 and all(_names(v) for v in value))
SEED = interval(int, 0)
# what the training loop's parameters may be, shared by the torch heads
FIT_RULES = {"lr": [interval(float, 0, low_open=True)], "batch_size": [interval(int, 1)], "max_epochs": [interval(int, 1)],
             "patience": [interval(int, 0)], "dropout": [interval(float, 0, 1, high_open=True)], "seed": [SEED]}

C = TypeVar("C")


def by_name(cls: type[C], source: Any) -> C:
    """The dataclass ``cls`` built from the same-named attributes of ``source``: reordering the fields of
    either can never swap two values, as building it by position could."""
    return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})


class Head(BaseEstimator):
    """Base of every head: subclasses define ``kind``, ``_parameter_constraints``, ``fit``, ``predict``, how
    they predict a store's clip (``predict_clip``, or ``predict_clips`` for all at once) and their state's
    (de)serialisation."""

    kind: ClassVar[str]
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {}
    provenance_: dict[str, dict]  # per feature set: how the training features were made
    training_: dict[str, Any]  # what prediction needs to know of the training data (target, label grid step, ...)

    def check_params(self) -> None:
        """Refuse, in one line, a parameter that no rule of ``_parameter_constraints`` allows (``fit`` calls it first)."""
        for name, value in self.get_params(deep=False).items():
            rules = self._parameter_constraints.get(name)
            if rules is None:
                raise MvfxError(f"{type(self).__name__}: parameter {name} has no constraints to check it against")
            if not any(rule.test(value) for rule in rules):
                raise MvfxError(f"{type(self).__name__}: {name}={_short(value)} is not valid; it must be "
                                f"{' or '.join(rule.text for rule in rules)}")

    def with_provenance(self, store: FeatureStore, extractors: Iterable[str]) -> Head:
        """Record where the training features came from (saved with the model, checked at prediction)."""
        self.provenance_ = feature_provenance(store, extractors)
        return self

    # --- applying a fitted head to a store's clips (``mvfx predict``) ------------------------------
    def predict_clips(self, clips: ClipReader, window_s: float = WINDOW_S) -> Iterator[ClipPrediction]:
        """Every clip's prediction, one clip at a time and in ``clips``' order, so memory does not grow with the store.
        ``window_s``: seconds per window of a time line, for heads whose time line has windows."""
        for clip in clips:
            yield self.predict_clip(clip, window_s)

    def predict_clip(self, clip: StoreClip, window_s: float = WINDOW_S) -> ClipPrediction:
        """One clip's rows of predictions.csv and, where the head has one, how to compute its time line."""
        raise MvfxError(f"{self.kind} models do not predict a store's clips")

    def prediction_columns(self) -> list[str]:
        """The columns of predictions.csv: the keys of every row ``predict_clip`` gives, fixed before the first clip."""
        raise MvfxError(f"{self.kind} models do not predict a store's clips")

    def draw_timeline(self, prediction: ClipPrediction, path: Path) -> bool:
        """Draw the prediction's time line as a PNG at ``path``; False (nothing drawn) when it has none."""
        if prediction.timeline is None:
            return False
        from mvfx.heads.plots import timeline_plot

        line = prediction.timeline()
        path.parent.mkdir(parents=True, exist_ok=True)
        timeline_plot(path, line.times, line.series, line.title, line.ylabel)
        return True

    # --- what subclasses provide ------------------------------------------------------------
    def _tensors(self) -> dict[str, Any]:
        """Learned arrays and weights as tensors (nested dicts and lists allowed)."""
        raise NotImplementedError

    def _facts(self) -> dict[str, Any]:
        """Learned state that is not an array (JSON)."""
        return {}

    def _restore(self, tensors: dict[str, Any], facts: dict[str, Any]) -> None:
        raise NotImplementedError

    def _upgrade(self, tensors: dict[str, Any], version: int) -> dict[str, Any]:
        """The tensors a model of format ``version`` saved, as this format saves them (a head whose saved form
        changed overrides this)."""
        return tensors

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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


def with_validation(x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None]:
    """``fit``'s data with ``validation`` = (x, y) appended, so one set of arrays holds both: (x, y, the training
    rows, the validation rows); without ``validation``, (x, y, every row, None)."""
    rows = np.arange(len(y))
    if validation is None:
        return x, y, rows, None
    x = {k: np.concatenate([x[k], validation[0][k]]) for k in x}
    y = np.concatenate([y, validation[1]])
    return x, y, rows, np.arange(len(rows), len(y))


Split = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]


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
