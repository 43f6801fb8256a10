"""The one cross-validation loop of the classifier runs (`mvfx train fusion`, `mvf`, `correspond`).

Each split's clone of the head, fitted on the other rows, gives the class probabilities of the split's test rows
for each model the run scores (the fusion members and their ensemble, one MVF configuration, the match
classifier). They are kept out of fold, scored per fold, and summarised in metrics.json's form (``models``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mvfx.heads.estimator import Head
from mvfx.heads.metrics import class_summary, classification_scores
from mvfx.heads.runs.cross_validation import Split, cross_validate, take


@dataclass
class OutOfFold:
    """Per model, each row's [classes] probabilities from the fold that tested it; which rows were tested; per fold,
    its test clips and each model's scores."""

    classes: list[str]
    codes: np.ndarray  # [N] each row's true class
    tested: np.ndarray  # [N] bool
    proba: dict[str, np.ndarray] = field(default_factory=dict)
    folds: list[dict] = field(default_factory=list)

    def models(self) -> dict[str, dict]:
        """metrics.json's ``models``: per model its ``aggregate`` over folds and its ``out_of_fold`` scores."""
        return {name: class_summary([f["scores"][name] for f in self.folds], self.codes[self.tested], p[self.tested], self.classes)
                for name, p in self.proba.items()}


def out_of_fold(head: Head, x: Any, y: Any, codes: np.ndarray, classes: list[str], splits: Iterable[Split], row_clips: list[list[str]],
                probabilities: Callable[[Head, Any], dict[str, np.ndarray]], main: str, on_fold: Callable[[dict], None] | None = None,
                facts: Callable[[Head, np.ndarray], dict] | None = None) -> OutOfFold:
    """Cross-validate ``head`` on ``x``, ``y`` over ``splits``. ``probabilities(model, test x)``: per model name, its
    [test rows, classes] probabilities in ``classes``' columns; ``codes``: each row's class as an index into
    ``classes``; ``row_clips``: the clips of each row (a fold's ``test_clips``); ``facts(model, test rows)``: what
    else a fold records of each model (epochs, retrieval scores); ``on_fold`` gets each fold's scores of ``main``."""
    result = OutOfFold(classes, codes, np.zeros(len(codes), bool))
    for fold, model, test in cross_validate(head, x, y, splits):
        more = facts(model, test) if facts else {}
        scores = {}
        for name, proba in probabilities(model, take(x, test)).items():
            result.proba.setdefault(name, np.zeros((len(codes), len(classes))))[test] = proba
            scores[name] = classification_scores(codes[test], proba, classes) | more
        result.tested[test] = True
        result.folds.append({"fold": fold, "test_clips": sorted({c for i in test for c in row_clips[i]}), "scores": scores})
        if on_fold:
            on_fold({"fold": fold, **scores[main]})
    return result
