"""The head base: scikit-learn's estimator conventions, the registry of head kinds, and parameter checking.

A head is a ``sklearn.base.BaseEstimator``: every hyper-parameter is a constructor argument stored unchanged (its
default lives in ``__init__`` only), ``fit`` returns self, learned state ends in ``_``, so ``sklearn.base.clone``
gives an unfitted copy per fold. Every head declares what each parameter may be in ``_parameter_constraints``
(scikit-learn's convention, in the rule vocabulary extractor options use too, ``mvfx.media.rules``) and checks
them first thing in ``fit``: a bad value is one line naming the parameter, not an error deep inside torch.
Configuration dataclasses are built from the head's attributes by field name (``by_name``), never by position.

A fitted head applies itself to a store's clips (``predict_clips``, one clip at a time, see ``application``,
into the columns ``prediction_columns`` declares) and gives its learned state as tensors and facts
(``_tensors``/``_facts``, restored by ``_restore``). It writes no file, and reads one only where it starts from
another run's weights (the MVF head's ``init_from``, an autoencoder's encoders): ``saved`` writes and loads the
saved-model folder, ``provenance`` records and checks the features' provenance, ``predict`` writes predictions
and draws time lines.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

from sklearn.base import BaseEstimator

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader, StoreClip
from mvfx.media.errors import MvfxError
from mvfx.media.rules import Interval, Is, Rule, refusal

HEADS: dict[str, type[Head]] = {}


def register(cls: type[Head]) -> type[Head]:
    """Class decorator: make a head restorable by its ``kind`` (a saved model names its kind, never its module)."""
    HEADS[cls.kind] = cls
    return cls


def _names(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0 and all(isinstance(v, str) and v for v in value)


# what several heads' parameters may be
SEED = Interval(int, 0)
NAMES = Is("a non-empty list of feature names", _names)
NAME_SETS = Is("a non-empty list of non-empty lists of feature names",
               lambda value: isinstance(value, list | tuple) and len(value) > 0 and all(_names(v) for v in value))

C = TypeVar("C")


def by_name(cls: type[C], source: Any) -> C:
    """The dataclass ``cls`` built from the same-named attributes of ``source``: reordering the fields of
    either can never swap two values, as building it by position could."""
    return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})


class CheckedEstimator(BaseEstimator):
    """An estimator whose parameters are checked against ``_parameter_constraints`` before it fits."""

    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {}

    def check_params(self) -> None:
        """Refuse, in one line, a parameter that no rule of ``_parameter_constraints`` allows (``fit`` calls it first)."""
        for name, value in self.get_params(deep=False).items():
            rules = self._parameter_constraints.get(name)
            if rules is None:
                raise MvfxError(f"{type(self).__name__}: parameter {name} has no constraints to check it against")
            problem = refusal(value, rules)
            if problem:
                raise MvfxError(f"{type(self).__name__}: {name}={_short(value)} is not valid; it {problem}")


class Head(CheckedEstimator):
    """Base of every head: subclasses define ``kind``, ``_parameter_constraints``, ``fit``, ``predict``, how
    they predict a store's clip (``predict_clip``, or ``predict_clips`` for all at once) and their learned state
    as tensors and facts (``_tensors``, ``_facts``, ``_restore``)."""

    kind: ClassVar[str]
    provenance_: dict[str, dict]  # per feature set: how the training features were made (``provenance``)
    training_: dict[str, Any]  # what prediction needs to know of the training data (target, label grid step, ...)

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

    # --- the learned state, as the saved format holds it (``saved``) ----------------------------------
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
