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
from mvfx.heads.estimator import Head, register, tensors
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
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(_inputs(features, rows, stats)), dim=1).numpy()


@register
class FusionHead(Head):
    """One late-fusion model per feature set in ``feature_sets``; ``predict_proba`` averages them (the ensemble).

    ``fit(x, y)``: ``x`` maps each extractor to clip-level features [N, D] (the mean over time), ``y`` holds
    N class names. Early stopping uses ``validation`` = (x, y) when given, else a stratified 15% of ``x``.
    """

    kind = "fusion"

    def __init__(self, feature_sets: list[list[str]] | None = None, hidden: int = 64, dropout: float = 0.5, lr: float = 1e-3,
                 batch_size: int = 32, max_epochs: int = 400, patience: int = 30, class_weights: str = "none",
                 seed: int = 0) -> None:
        self.feature_sets = feature_sets
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.class_weights = class_weights
        self.seed = seed

    @property
    def config(self) -> FusionConfig:
        return FusionConfig(self.hidden, self.dropout, self.lr, self.batch_size, self.max_epochs, self.patience,
                            self.class_weights, self.seed)

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> FusionHead:
        self.classes_ = sorted(set(y) | (set(validation[1]) if validation else set()))
        if validation is None:
            codes = np.array([self.classes_.index(label) for label in y])
            train, val = inner_validation(np.arange(len(y)), codes, self.seed)
        else:
            x = {e: np.concatenate([x[e], validation[0][e]]) for e in x}
            train, val = np.arange(len(y)), np.arange(len(y), len(y) + len(validation[1]))
            y = np.concatenate([y, validation[1]])
        codes = np.array([self.classes_.index(label) for label in y])
        self.members_ = [fit_fusion([x[e] for e in member], codes, train, val, len(self.classes_), self.config)
                         for member in self.feature_sets]
        return self

    def member_proba(self, x: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each member's [N, classes] probabilities."""
        rows = np.arange(len(next(iter(x.values()))))
        return [predict_proba(model, [x[e] for e in member], rows, stats) for (model, stats), member in zip(self.members_, self.feature_sets)]

    def predict_proba(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.mean(self.member_proba(x), axis=0)

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.classes_)[self.predict_proba(x).argmax(axis=1)]

    def _tensors(self) -> dict:
        return {"members": [{"weights": model.state_dict(), "standardiser": [tensors(s) for s in stats]} for model, stats in self.members_]}

    def _facts(self) -> dict:
        return {"classes": self.classes_, "dims": [[int(s[0].shape[0]) for s in stats] for _, stats in self.members_]}

    def _restore(self, state: dict, facts: dict) -> None:
        self.classes_, self.members_ = facts["classes"], []
        for saved, dims in zip(state["members"], facts["dims"]):
            model = LateFusionClassifier(dims, len(self.classes_), self.config)
            model.load_state_dict(saved["weights"])
            self.members_.append((model.eval(), [tuple(t.numpy() for t in s) for s in saved["standardiser"]]))


def inner_validation(train: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified 15% of the training rows for early stopping."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y[train])
    stratify = y[train] if counts[counts > 0].min() >= 2 else None
    fit_rows, val_rows = train_test_split(train, test_size=max(0.15, len(counts) / len(train)), random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(val_rows)
