"""LSTM regressors for continuous valence/arousal (MuVi): unimodal, early, late and PAIR fusion.

Each branch is 2 stacked LSTM layers of 256 units with dropout 0.2; the
input for a step is that step and the ``seq_len - 1`` before it (the first
steps of a clip repeat the first row). The output is tanh of a dense layer
on the last hidden state (ratings live in [-1, 1]).
- none: one branch on one extractor's features;
- early: one branch on the concatenated features of all extractors;
- late: one branch per extractor, hidden states concatenated, one dense layer;
- pair: late, with each branch first trained as a unimodal model on that
  modality's own ratings (e.g. music-only and visual-only annotations), then
  fine-tuned together on the audiovisual target.
Adam (lr 1e-4), MSE, early stopping on a validation split of the training
clips, restoring the best epoch. Seeded: the same command gives the same
numbers on CPU, from the head's own generators (``torch_random``): the
layers of a branch are one-layer LSTMs with ``torch_random.Dropout`` between
them, which is what ``nn.LSTM(num_layers, dropout)`` computes, its dropout
drawn from the head's generator instead of torch's global one. A model saved
as one multi-layer LSTM (format version 1) loads into them (``_upgrade``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, StoreClip, curve_columns, curve_prediction
from mvfx.heads.data.dataset import ClipData
from mvfx.heads.estimator import NAMES, Head, by_name, register
from mvfx.heads.standardiser import fit_scaler, scaler_from, scaler_tensors, standardise
from mvfx.heads.torch_fit import FIT_RULES, FitConfig, fit
from mvfx.heads.torch_random import Dropout, built
from mvfx.media.errors import MvfxError
from mvfx.media.rules import Interval, OneOf, Rule

FUSIONS = ("none", "early", "late", "pair")


@dataclass(frozen=True)
class LstmConfig:
    """``LstmHead``'s parameters that the network and its training read (``LstmHead.config``; defaults there)."""

    seq_len: int
    hidden: int
    layers: int
    dropout: float
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    val_fraction: float
    seed: int


class Branch(nn.Module):
    """``cfg.layers`` stacked one-layer LSTMs, ``Dropout`` between them; the last step's hidden state."""

    def __init__(self, n_in: int, cfg: LstmConfig) -> None:
        super().__init__()
        self.lstm = nn.ModuleList(nn.LSTM(n_in if k == 0 else cfg.hidden, cfg.hidden, batch_first=True) for k in range(cfg.layers))
        self.dropout = Dropout(cfg.dropout)

    @property
    def input_size(self) -> int:
        return self.lstm[0].input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.lstm):
            x = layer(self.dropout(x) if k else x)[0]
        return x[:, -1]


def one_layer_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A version-1 state dict (each branch one ``nn.LSTM`` of several layers: ``lstm.weight_ih_l1``) with the keys of
    ``Branch``'s one-layer LSTMs (``lstm.1.weight_ih_l0``)."""
    return {re.sub(r"\.lstm\.(\w+?)_l(\d+)$", r".lstm.\2.\1_l0", key): value for key, value in state.items()}


class Regressor(nn.Module):
    """Branches (one per input group) -> concatenated last hidden states -> dense -> tanh."""

    def __init__(self, inputs: list[int], cfg: LstmConfig) -> None:
        super().__init__()
        self.branches = nn.ModuleList(Branch(n, cfg) for n in inputs)
        self.head = nn.Linear(cfg.hidden * len(inputs), 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.tanh(self.head(torch.cat([b(x) for b, x in zip(self.branches, xs)], dim=1)))[:, 0]


def windows(features: np.ndarray, seq_len: int) -> np.ndarray:
    """[G, D] -> [G, seq_len, D]: each step with the seq_len - 1 steps before it (front padded)."""
    padded = np.concatenate([np.repeat(features[:1], seq_len - 1, axis=0), features])
    return np.lib.stride_tricks.sliding_window_view(padded, seq_len, axis=0).transpose(0, 2, 1).copy()


def _group(clip: ClipData, group: list[str]) -> np.ndarray:
    """[G, sum D] one clip's features of one input group, side by side."""
    return np.concatenate([clip.features[e] for e in group], axis=1)


def fit_scalers(clips: list[ClipData], groups: list[list[str]]) -> list:
    """One scaler per input group, fitted on the rows of the training ``clips``."""
    return [fit_scaler(np.concatenate([_group(c, group) for c in clips])) for group in groups]


def inputs(clips: list[ClipData], groups: list[list[str]], scalers: list, seq_len: int) -> list[torch.Tensor]:
    """Per input group, the standardised [steps, seq_len, D] windows of every step of ``clips``."""
    return [torch.as_tensor(np.concatenate([windows(standardise(scaler, _group(c, group)), seq_len) for c in clips]), dtype=torch.float32)
            for group, scaler in zip(groups, scalers)]


def input_groups(extractors: list[str], fusion: str) -> list[list[str]]:
    if fusion == "none" and len(extractors) != 1:
        raise MvfxError("--fusion none takes exactly one feature set; use early, late or pair for several")
    if fusion in ("late", "pair") and len(extractors) < 2:
        raise MvfxError(f"--fusion {fusion} needs at least two feature sets")
    return [extractors] if fusion in ("none", "early") else [[e] for e in extractors]


def _split_validation(clips: list[ClipData], cfg: LstmConfig) -> tuple[list[ClipData], list[ClipData]]:
    order = np.random.default_rng(cfg.seed).permutation(len(clips))
    n_val = max(1, int(round(cfg.val_fraction * len(clips))))
    return [clips[i] for i in order[n_val:]], [clips[i] for i in order[:n_val]]


def train(model: Regressor, clips: list[ClipData], groups: list[list[str]], targets, cfg: LstmConfig) -> list:
    """Fit ``model`` on ``clips`` (targets: clip -> series) with early stopping; returns the fitted scalers."""
    fit_clips, val_clips = _split_validation(clips, cfg)
    scalers = fit_scalers(fit_clips, groups)
    x_fit, x_val = inputs(fit_clips, groups, scalers, cfg.seq_len), inputs(val_clips, groups, scalers, cfg.seq_len)
    y_fit = torch.as_tensor(np.concatenate([targets(c) for c in fit_clips]), dtype=torch.float32)
    y_val = torch.as_tensor(np.concatenate([targets(c) for c in val_clips]), dtype=torch.float32)
    fit(
        model, len(y_fit),
        lambda batch: nn.functional.mse_loss(model([x[batch] for x in x_fit]), y_fit[batch]),
        lambda: float(nn.functional.mse_loss(model(x_val), y_val)),
        by_name(FitConfig, cfg),
    )
    return scalers


@register
class LstmHead(Head):
    """LSTM regressor with no, early, late or PAIR fusion of ``features`` (see the module docstring).

    ``fit(clips, modality_targets=...)``: the targets are the clips' own; for PAIR, ``modality_targets`` holds
    per clip a dict extractor -> that modality's own ratings on the clip's grid, which pre-train that
    modality's branch (clips without them sit out that branch's pre-training). Applied to a store's clip, it
    predicts the curve on a grid with its training labels' step (``application.curve_prediction``).
    """

    kind = "lstm"
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        **FIT_RULES, "features": [NAMES], "fusion": [OneOf(FUSIONS)], "seq_len": [Interval(int, 1)], "hidden": [Interval(int, 1)],
        "layers": [Interval(int, 1)], "val_fraction": [Interval(float, 0, 1, low_open=True, high_open=True)],
    }

    def __init__(self, features: list[str] | None = None, fusion: str = "none", seq_len: int = 4, hidden: int = 256,
                 layers: int = 2, dropout: float = 0.2, lr: float = 1e-4, batch_size: int = 64, max_epochs: int = 300,
                 patience: int = 20, val_fraction: float = 0.15, seed: int = 0) -> None:
        self.features = features
        self.fusion = fusion
        self.seq_len = seq_len
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed

    @property
    def config(self) -> LstmConfig:
        return by_name(LstmConfig, self)

    def fit(self, clips: list[ClipData], y=None, *, modality_targets: list[dict[str, np.ndarray]] | None = None,
            validation=None) -> LstmHead:
        """``y`` must be None (the targets are the clips' own); ``validation`` is unused (a share of ``clips`` is)."""
        self.check_params()
        if y is not None:
            raise MvfxError("LstmHead.fit: the targets are the clips' own; give PAIR's per-modality ratings as modality_targets=")
        cfg = self.config
        self.groups_ = input_groups(list(self.features), self.fusion)
        self.dims_ = [sum(clips[0].features[e].shape[1] for e in g) for g in self.groups_]
        generator = torch.Generator().manual_seed(cfg.seed)  # the initial weights, of the pre-trained branches too
        self.model_ = built(lambda: Regressor(self.dims_, cfg), generator)
        if self.fusion == "pair":
            own = dict(zip([c.clip_id for c in clips], modality_targets or [{}] * len(clips)))
            for branch, group in zip(self.model_.branches, self.groups_):
                rated = [c for c in clips if group[0] in own[c.clip_id]]  # the modality's own ratings, where given
                usable, target = (rated, lambda c, e=group[0]: own[c.clip_id][e]) if rated else (clips, lambda c: c.target)
                unimodal = built(lambda branch=branch: Regressor([branch.input_size], cfg), generator)
                train(unimodal, usable, [group], target, cfg)
                branch.load_state_dict(unimodal.branches[0].state_dict())
        self.scalers_ = train(self.model_, clips, self.groups_, lambda c: c.target, cfg)
        return self

    def predict(self, clips: list[ClipData]) -> list[np.ndarray]:
        self.model_.eval()
        with torch.no_grad():
            return [self.model_(inputs([c], self.groups_, self.scalers_, self.seq_len)).numpy() for c in clips]

    def prediction_columns(self) -> list[str]:
        return curve_columns(self)

    def predict_clip(self, clip: StoreClip, window_s: float = WINDOW_S) -> ClipPrediction:
        return curve_prediction(self, clip)

    def _tensors(self) -> dict:
        return {"weights": self.model_.state_dict(), "standardiser": [scaler_tensors(s) for s in self.scalers_]}

    def _facts(self) -> dict:
        return {"groups": self.groups_, "dims": self.dims_}

    def _upgrade(self, state: dict, version: int) -> dict:
        return {**state, "weights": one_layer_keys(state["weights"])} if version < 2 else state

    def _restore(self, state: dict, facts: dict) -> None:
        self.groups_, self.dims_ = facts["groups"], facts["dims"]
        self.model_ = built(lambda: Regressor(self.dims_, self.config), torch.Generator())
        self.model_.load_state_dict(state["weights"])
        self.scalers_ = [scaler_from(*(t.numpy() for t in s)) for s in state["standardiser"]]
