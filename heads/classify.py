"""Late-fusion emotion classifier (MVED) and its ensemble ("integrated multimodal").

Each modality's clip-level features (the mean over time) are standardised on
the training clips and projected by its own dense layer (64 units, ReLU) so
that a 988-d and a 32-d modality weigh alike; the projections are
concatenated, dropped out (0.5) and fed to a softmax layer. The ensemble
averages the class probabilities of several such models, each on its own
feature sets. Evaluation: stratified k-fold over clips (default 6, seeded),
or the labels' split column (train / val for early stopping / test).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mvfx.heads.dataset import scale, scaling
from mvfx.heads.torch_fit import FitConfig, fit


@dataclass(frozen=True)
class FusionConfig:
    hidden: int = 64
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 30
    class_weights: str = "none"  # "balanced": n / (classes x count) per class in the loss
    seed: int = 0


class LateFusionClassifier(nn.Module):
    def __init__(self, dims: list[int], n_classes: int, cfg: FusionConfig) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Sequential(nn.Linear(d, cfg.hidden), nn.ReLU()) for d in dims)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden * len(dims), n_classes))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(torch.cat([p(x) for p, x in zip(self.projections, xs)], dim=1))


def _inputs(features: list[np.ndarray], rows: np.ndarray, stats: list) -> list[torch.Tensor]:
    return [torch.as_tensor(scale(f[rows], st)) for f, st in zip(features, stats)]


def fit_fusion(
    features: list[np.ndarray], y: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int, cfg: FusionConfig,
) -> tuple[LateFusionClassifier, list]:
    """A classifier trained on ``train`` rows (early stopping on ``val``) and its per-modality scaling."""
    stats = [scaling(f[train]) for f in features]
    x_train, x_val = _inputs(features, train, stats), _inputs(features, val, stats)
    y_train, y_val = torch.as_tensor(y[train]), torch.as_tensor(y[val])
    torch.manual_seed(cfg.seed)
    model = LateFusionClassifier([f.shape[1] for f in features], n_classes, cfg)
    weight = None
    if cfg.class_weights == "balanced":
        counts = np.bincount(y[train], minlength=n_classes).astype(np.float32)
        weight = torch.as_tensor(len(train) / (n_classes * np.maximum(counts, 1)))

    def loss(logits, target):
        return nn.functional.cross_entropy(logits, target, weight=weight)

    fit(model, len(train), lambda b: loss(model([x[b] for x in x_train]), y_train[b]),
        lambda: float(loss(model(x_val), y_val)), FitConfig(cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.seed))
    return model, stats


def predict_proba(model: LateFusionClassifier, features: list[np.ndarray], rows: np.ndarray, stats: list) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(_inputs(features, rows, stats)), dim=1).numpy()


def inner_validation(train: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified 15% of the training rows for early stopping."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y[train])
    stratify = y[train] if counts[counts > 0].min() >= 2 else None
    fit_rows, val_rows = train_test_split(train, test_size=max(0.15, len(counts) / len(train)), random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(val_rows)
