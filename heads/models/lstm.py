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
numbers on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, StoreClip, curve_prediction
from mvfx.heads.data.dataset import ClipData, scale, scaling
from mvfx.heads.estimator import FIT_RULES, NAMES, Head, Rule, by_name, interval, options, register, tensors
from mvfx.heads.torch_fit import FitConfig, fit
from mvfx.media.errors import MvfxError

FUSIONS = ("none", "early", "late", "pair")


@dataclass(frozen=True)
class LstmConfig:
    seq_len: int = 4
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 20
    val_fraction: float = 0.15
    seed: int = 0


class Branch(nn.Module):
    def __init__(self, n_in: int, cfg: LstmConfig) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, cfg.hidden, num_layers=cfg.layers, dropout=cfg.dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0][:, -1]


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


class Standardiser:
    """Per-feature mean/std of each input group, fitted on training clips only."""

    def __init__(self, stats: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.stats = stats

    @classmethod
    def fit(cls, clips: list[ClipData], groups: list[list[str]]) -> Standardiser:
        return cls([scaling(np.concatenate([np.concatenate([c.features[e] for e in group], axis=1) for c in clips]))
                    for group in groups])

    def inputs(self, clips: list[ClipData], groups: list[list[str]], seq_len: int) -> list[torch.Tensor]:
        out = []
        for group, stats in zip(groups, self.stats):
            per_clip = [windows(scale(np.concatenate([c.features[e] for e in group], axis=1), stats), seq_len) for c in clips]
            out.append(torch.as_tensor(np.concatenate(per_clip), dtype=torch.float32))
        return out


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


def train(model: Regressor, clips: list[ClipData], groups: list[list[str]], targets, cfg: LstmConfig) -> Standardiser:
    """Fit ``model`` on ``clips`` (targets: clip -> series) with early stopping; returns the fitted standardiser."""
    torch.manual_seed(cfg.seed)
    fit_clips, val_clips = _split_validation(clips, cfg)
    scaler = Standardiser.fit(fit_clips, groups)
    x_fit, x_val = scaler.inputs(fit_clips, groups, cfg.seq_len), scaler.inputs(val_clips, groups, cfg.seq_len)
    y_fit = torch.as_tensor(np.concatenate([targets(c) for c in fit_clips]), dtype=torch.float32)
    y_val = torch.as_tensor(np.concatenate([targets(c) for c in val_clips]), dtype=torch.float32)
    fit(
        model, len(y_fit),
        lambda batch: nn.functional.mse_loss(model([x[batch] for x in x_fit]), y_fit[batch]),
        lambda: float(nn.functional.mse_loss(model(x_val), y_val)),
        by_name(FitConfig, cfg),
    )
    return scaler


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
        **FIT_RULES, "features": [NAMES], "fusion": [options(*FUSIONS)], "seq_len": [interval(int, 1)], "hidden": [interval(int, 1)],
        "layers": [interval(int, 1)], "val_fraction": [interval(float, 0, 1, low_open=True, high_open=True)],
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
        torch.manual_seed(cfg.seed)  # the initial weights too must not depend on what ran before
        self.model_ = Regressor(self.dims_, cfg)
        if self.fusion == "pair":
            own = dict(zip([c.clip_id for c in clips], modality_targets or [{}] * len(clips)))
            for branch, group in zip(self.model_.branches, self.groups_):
                rated = [c for c in clips if group[0] in own[c.clip_id]]  # the modality's own ratings, where given
                usable, target = (rated, lambda c, e=group[0]: own[c.clip_id][e]) if rated else (clips, lambda c: c.target)
                unimodal = Regressor([branch.lstm.input_size], cfg)
                train(unimodal, usable, [group], target, cfg)
                branch.load_state_dict(unimodal.branches[0].state_dict())
        self.standardiser_ = train(self.model_, clips, self.groups_, lambda c: c.target, cfg)
        return self

    def predict(self, clips: list[ClipData]) -> list[np.ndarray]:
        self.model_.eval()
        with torch.no_grad():
            return [self.model_(self.standardiser_.inputs([c], self.groups_, self.seq_len)).numpy() for c in clips]

    def predict_clip(self, clip: StoreClip, window_s: float = WINDOW_S) -> ClipPrediction:
        return curve_prediction(self, clip)

    def _tensors(self) -> dict:
        return {"weights": self.model_.state_dict(), "standardiser": [tensors(s) for s in self.standardiser_.stats]}

    def _facts(self) -> dict:
        return {"groups": self.groups_, "dims": self.dims_}

    def _restore(self, state: dict, facts: dict) -> None:
        self.groups_, self.dims_ = facts["groups"], facts["dims"]
        self.model_ = Regressor(self.dims_, self.config)
        self.model_.load_state_dict(state["weights"])
        self.standardiser_ = Standardiser([tuple(t.numpy() for t in s) for s in state["standardiser"]])
