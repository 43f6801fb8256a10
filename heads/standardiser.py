"""The one standardiser of the heads: scikit-learn's ``StandardScaler``, fitted on training rows only.

Every head that standardises features (LASSO, LSTM, the fusion members, correspondence) fits one scaler per
input and applies it the same way: NaN values (e.g. a frame without a face) are ignored when fitting, as
scikit-learn does, and become 0 (the training mean) once scaled; a constant feature is divided by 1. A saved
model keeps the scaler as two tensors, the mean and the scale (``scaler_tensors``), and gets it back with
``scaler_from`` (models saved before kept the same two: their mean and their standard deviation + 1e-6).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler


def fit_scaler(x: np.ndarray) -> StandardScaler:
    """A scaler of the training rows ``x`` [N, D] (NaN ignored; a column without a finite value scales to 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return StandardScaler().fit(x)


def standardise(scaler: StandardScaler, x: np.ndarray) -> np.ndarray:
    """float32 (x - mean_) / scale_; NaN becomes 0, the training mean.

    Each step is computed in the statistics' own precision and stored as float32, as the models saved before
    computed it, so they predict what they did (``StandardScaler.transform`` first rounds the statistics to
    the data's float32: a saved LASSO's curve moved by 1e-6)."""
    out = np.array(x, dtype=np.float32)
    out -= scaler.mean_
    out /= scaler.scale_
    return np.nan_to_num(out, copy=False)


def scaler_tensors(scaler: StandardScaler) -> list[torch.Tensor]:
    """[mean, scale]: what a saved model keeps of a scaler."""
    return [torch.as_tensor(scaler.mean_), torch.as_tensor(scaler.scale_)]


def scaler_from(mean: np.ndarray, scale: np.ndarray) -> StandardScaler:
    """The fitted scaler whose transform is (x - ``mean``) / ``scale``: a saved one, back."""
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.n_features_in_ = mean, scale, len(mean)
    return scaler
