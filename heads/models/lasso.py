"""LASSO baseline (MuVi): standardise on the training clips, alpha by inner grouped CV, coefficients by name."""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.linear_model import LassoCV
from sklearn.model_selection import GroupKFold

from mvfx.heads.application import WINDOW_S, ClipPrediction, StoreClip, curve_columns, curve_prediction
from mvfx.heads.data.dataset import ClipData, stack
from mvfx.heads.estimator import NAMES, SEED, Head, register
from mvfx.heads.standardiser import fit_scaler, scaler_from, scaler_tensors, standardise
from mvfx.media.rules import Interval, Rule


@register
class LassoHead(Head):
    """Standardise + LassoCV over the concatenated ``features``; inner folds are over clips too.

    ``fit(clips)`` takes ``ClipData`` (features on the label grid, with targets); ``predict(clips)``
    gives one series per clip: ``scaler_``-standardised x @ coef_ + intercept_. Applied to a store's clip, it
    predicts the curve on a grid with its training labels' step (``application.curve_prediction``).
    """

    kind = "lasso"
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        "features": [NAMES], "inner_folds": [Interval(int, 2)], "n_alphas": [Interval(int, 1)], "max_iter": [Interval(int, 1)],
        "seed": [SEED],
    }

    def __init__(self, features: list[str] | None = None, inner_folds: int = 5, n_alphas: int = 30, max_iter: int = 5000,
                 seed: int = 0) -> None:
        self.features = features
        self.inner_folds = inner_folds
        self.n_alphas = n_alphas
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, clips: list[ClipData], y=None, validation=None) -> LassoHead:
        """``y`` and ``validation`` are unused: the targets are the clips' own."""
        self.check_params()
        x, target, groups = stack(clips, self.features)
        splits = list(GroupKFold(n_splits=min(self.inner_folds, len(clips))).split(x, target, groups))
        self.scaler_ = fit_scaler(x)
        lasso = LassoCV(cv=splits, alphas=self.n_alphas, max_iter=self.max_iter, random_state=self.seed)
        lasso.fit(standardise(self.scaler_, x), target)
        self.coef_, self.intercept_, self.alpha_ = lasso.coef_, float(lasso.intercept_), float(lasso.alpha_)
        return self

    def predict(self, clips: list[ClipData]) -> list[np.ndarray]:
        return [standardise(self.scaler_, stack([clip], self.features)[0]) @ self.coef_ + self.intercept_ for clip in clips]

    def prediction_columns(self) -> list[str]:
        return curve_columns(self)

    def predict_clip(self, clip: StoreClip, window_s: float = WINDOW_S) -> ClipPrediction:
        return curve_prediction(self, clip)

    def _tensors(self) -> dict:
        mean, scale = scaler_tensors(self.scaler_)
        return {"mean": mean, "scale": scale, "coef": torch.as_tensor(self.coef_)}

    def _facts(self) -> dict:
        return {"intercept": self.intercept_, "alpha": self.alpha_}

    def _restore(self, state: dict, facts: dict) -> None:
        self.scaler_, self.coef_ = scaler_from(state["mean"].numpy(), state["scale"].numpy()), state["coef"].numpy()
        self.intercept_, self.alpha_ = facts["intercept"], facts["alpha"]
