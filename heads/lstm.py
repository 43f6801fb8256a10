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

import numpy as np
import torch
from torch import nn

from mvfx.heads.dataset import ClipData, scale, scaling
from mvfx.heads.torch_fit import FitConfig, fit

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
    """Per-feature mean/std fitted on training clips only."""

    def __init__(self, clips: list[ClipData], groups: list[list[str]]) -> None:
        self.stats = []
        for group in groups:
            self.stats.append(scaling(np.concatenate([np.concatenate([c.features[e] for e in group], axis=1) for c in clips])))

    def inputs(self, clips: list[ClipData], groups: list[list[str]], seq_len: int) -> list[torch.Tensor]:
        out = []
        for group, stats in zip(groups, self.stats):
            per_clip = [windows(scale(np.concatenate([c.features[e] for e in group], axis=1), stats), seq_len) for c in clips]
            out.append(torch.as_tensor(np.concatenate(per_clip), dtype=torch.float32))
        return out


def input_groups(extractors: list[str], fusion: str) -> list[list[str]]:
    if fusion == "none" and len(extractors) != 1:
        raise ValueError("--fusion none takes exactly one feature set; use early, late or pair for several")
    if fusion in ("late", "pair") and len(extractors) < 2:
        raise ValueError(f"--fusion {fusion} needs at least two feature sets")
    return [extractors] if fusion in ("none", "early") else [[e] for e in extractors]


def _split_validation(clips: list[ClipData], cfg: LstmConfig) -> tuple[list[ClipData], list[ClipData]]:
    order = np.random.default_rng(cfg.seed).permutation(len(clips))
    n_val = max(1, int(round(cfg.val_fraction * len(clips))))
    return [clips[i] for i in order[n_val:]], [clips[i] for i in order[:n_val]]


def train(model: Regressor, clips: list[ClipData], groups: list[list[str]], targets, cfg: LstmConfig) -> Standardiser:
    """Fit ``model`` on ``clips`` (targets: clip -> series) with early stopping; returns the fitted standardiser."""
    torch.manual_seed(cfg.seed)
    fit_clips, val_clips = _split_validation(clips, cfg)
    scaler = Standardiser(fit_clips, groups)
    x_fit, x_val = scaler.inputs(fit_clips, groups, cfg.seq_len), scaler.inputs(val_clips, groups, cfg.seq_len)
    y_fit = torch.as_tensor(np.concatenate([targets(c) for c in fit_clips]), dtype=torch.float32)
    y_val = torch.as_tensor(np.concatenate([targets(c) for c in val_clips]), dtype=torch.float32)
    fit(
        model, len(y_fit),
        lambda batch: nn.functional.mse_loss(model([x[batch] for x in x_fit]), y_fit[batch]),
        lambda: float(nn.functional.mse_loss(model(x_val), y_val)),
        FitConfig(cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.seed),
    )
    return scaler


def fit_model(clips: list[ClipData], extractors: list[str], fusion: str, cfg: LstmConfig, pretrain: dict | None = None):
    """A trained Regressor and its standardiser; PAIR first trains one unimodal model per modality."""
    groups = input_groups(extractors, fusion)
    dims = [sum(clips[0].features[e].shape[1] for e in g) for g in groups]
    torch.manual_seed(cfg.seed)  # the initial weights too must not depend on what ran before
    model = Regressor(dims, cfg)
    if fusion == "pair":
        for branch, group in zip(model.branches, groups):
            labels = (pretrain or {}).get(group[0])
            usable = [c for c in clips if labels is None or c.clip_id in labels]
            unimodal = Regressor([branch.lstm.input_size], cfg)
            target = (lambda c: c.target) if labels is None else (lambda c, lab=labels: _on_grid(lab[c.clip_id], c))
            train(unimodal, usable, [group], target, cfg)
            branch.load_state_dict(unimodal.branches[0].state_dict())
    scaler = train(model, clips, groups, lambda c: c.target, cfg)
    return model, scaler, groups


def _on_grid(gold, clip: ClipData) -> np.ndarray:
    """A modality's own gold series sampled at the clip's grid steps."""
    return np.interp(clip.times[:, 0], gold.times[:, 0], gold.value)


def predict(model: Regressor, scaler: Standardiser, groups: list[list[str]], clip: ClipData, seq_len: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(scaler.inputs([clip], groups, seq_len)).numpy()


def lstm_fit_predict(extractors: list[str], fusion: str, cfg: LstmConfig, pretrain: dict | None = None):
    def fit_predict(train_clips: list[ClipData], test: list[ClipData], fold: int) -> dict[str, np.ndarray]:
        model, scaler, groups = fit_model(train_clips, extractors, fusion, cfg, pretrain)
        return {c.clip_id: predict(model, scaler, groups, c, cfg.seq_len) for c in test}

    return fit_predict
