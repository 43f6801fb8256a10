"""Late-fusion emotion classifier (MVED) and its ensemble ("integrated multimodal").

Each modality's clip-level features (the mean over time) are standardised on
the training clips and projected by its own dense layer (64 units, ReLU) so
that a 988-d and a 32-d modality weigh alike; the projections are
concatenated, dropped out (0.5) and fed to a softmax layer. The ensemble
averages the class probabilities of several such models, each on its own
feature sets. Evaluation: stratified k-fold over clips (default 6, seeded),
or the labels' split column (train / val for early stopping / test).

Small corpora (100-3,000 clips) let that network overfit, so by default each
member picks its model by inner stratified cross-validation on its own
training rows (lowest mean log-loss): a standardised multinomial logistic
regression with C in ``LOGISTIC_C``, and the network where every class has
``MLP_MIN_PER_CLASS`` rows or more (its inner CV is the costly part).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, StoreClip, Timeline, class_columns, class_row, span_means, windows
from mvfx.heads.data.align import clip_mean
from mvfx.heads.data.dataset import inner_validation, with_validation
from mvfx.heads.estimator import NAME_SETS, Head, by_name, register
from mvfx.heads.standardiser import fit_scaler, scaler_from, scaler_tensors, standardise
from mvfx.heads.torch_fit import FIT_RULES, FitConfig, fit
from mvfx.heads.torch_random import Dropout, built
from mvfx.media.rules import Interval, OneOf, Rule

LOGISTIC_C = (0.01, 0.1, 1.0)
MLP_MIN_PER_CLASS = 20
INNER_FOLDS = 3


@dataclass(frozen=True)
class FusionConfig:
    """``FusionHead``'s parameters that the network and its training read (``FusionHead.config``; defaults there)."""

    hidden: int
    dropout: float
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    class_weights: str  # "balanced": n / (classes x count) per class in the loss
    seed: int


class LateFusionClassifier(nn.Module):
    def __init__(self, dims: list[int], n_classes: int, cfg: FusionConfig) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Sequential(nn.Linear(d, cfg.hidden), nn.ReLU()) for d in dims)
        self.classifier = nn.Sequential(Dropout(cfg.dropout), nn.Linear(cfg.hidden * len(dims), n_classes))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(torch.cat([p(x) for p, x in zip(self.projections, xs)], dim=1))


def _inputs(features: list[np.ndarray], rows: np.ndarray, scalers: list) -> list[torch.Tensor]:
    return [torch.as_tensor(standardise(scaler, f[rows])) for f, scaler in zip(features, scalers)]


def fit_fusion(
    features: list[np.ndarray], y: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int, cfg: FusionConfig,
) -> tuple[LateFusionClassifier, list]:
    """A classifier trained on ``train`` rows (early stopping on ``val``) and its per-modality scalers."""
    scalers = [fit_scaler(f[train]) for f in features]
    x_train, x_val = _inputs(features, train, scalers), _inputs(features, val, scalers)
    y_train, y_val = torch.as_tensor(y[train]), torch.as_tensor(y[val])
    model = built(lambda: LateFusionClassifier([f.shape[1] for f in features], n_classes, cfg), torch.Generator().manual_seed(cfg.seed))
    weight = None
    if cfg.class_weights == "balanced":
        counts = np.bincount(y[train], minlength=n_classes).astype(np.float32)
        weight = torch.as_tensor(len(train) / (n_classes * np.maximum(counts, 1)))

    def loss(logits, target):
        return nn.functional.cross_entropy(logits, target, weight=weight)

    fit(model, len(train), lambda b: loss(model([x[b] for x in x_train]), y_train[b]),
        lambda: float(loss(model(x_val), y_val)), by_name(FitConfig, cfg))
    return model, scalers


def predict_proba(model: LateFusionClassifier, features: list[np.ndarray], rows: np.ndarray, scalers: list) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(_inputs(features, rows, scalers)), dim=1).numpy()


@dataclass
class LogisticMember:
    """A standardised multinomial logistic regression as plain arrays: per-modality scalers, [K, D] weights, [K] bias
    and the K class codes it saw (other classes get probability 0)."""

    scalers: list
    coef: np.ndarray
    intercept: np.ndarray
    codes: np.ndarray

    def proba(self, features: list[np.ndarray], rows: np.ndarray, n_classes: int) -> np.ndarray:
        logits = np.concatenate([standardise(s, f[rows]) for f, s in zip(features, self.scalers)], axis=1).astype(np.float64) @ self.coef.T
        logits += self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        out = np.zeros((len(rows), n_classes))
        out[:, self.codes] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return out


def fit_logistic(features: list[np.ndarray], y: np.ndarray, train: np.ndarray, c: float, class_weights: str) -> LogisticMember:
    """L2 logistic regression (lbfgs, multinomial) on ``train`` rows, standardised on them."""
    from sklearn.linear_model import LogisticRegression

    scalers = [fit_scaler(f[train]) for f in features]
    x = np.concatenate([standardise(s, f[train]) for f, s in zip(features, scalers)], axis=1)
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if class_weights == "balanced" else None).fit(x, y[train])
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    if len(model.classes_) == 2:  # one sigmoid row -> two softmax rows with the same probabilities
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return LogisticMember(scalers, coef, intercept, model.classes_.astype(np.int64))


def member_proba(member: LogisticMember | tuple, features: list[np.ndarray], rows: np.ndarray, n_classes: int) -> np.ndarray:
    """[rows, n_classes] probabilities of a fitted member (a ``LogisticMember`` or a network and its scalers)."""
    if isinstance(member, LogisticMember):
        return member.proba(features, rows, n_classes)
    model, scalers = member
    return predict_proba(model, features, rows, scalers)


def fit_member(features: list[np.ndarray], y: np.ndarray, train: np.ndarray, val: np.ndarray | None, n_classes: int, cfg: FusionConfig,
               choice: str) -> LogisticMember | tuple:
    """``choice`` ("mlp" or "logistic C=...") fitted on ``train``: the network stops early on ``val`` (else on
    ``inner_validation``'s share of ``train``); a logistic regression, which has no early stopping, fits on both."""
    if choice == "mlp":
        if val is None:
            train, val = inner_validation(train, y, cfg.seed)
        return fit_fusion(features, y, train, val, n_classes, cfg)
    rows = train if val is None else np.concatenate([train, val])
    return fit_logistic(features, y, rows, float(choice.split("=")[1]), cfg.class_weights)


def smallest_class(y: np.ndarray, rows: np.ndarray) -> int:
    """Rows of the rarest class present among ``rows``."""
    return int(np.bincount(y[rows])[np.unique(y[rows])].min())


def candidates(y: np.ndarray, rows: np.ndarray, member_model: str) -> list[str]:
    """The models a member chooses among: logistic regressions always (auto), the network with enough rows per class."""
    logistic = [f"logistic C={c:g}" for c in LOGISTIC_C]
    if member_model == "mlp":
        return ["mlp"]
    if member_model == "logistic":
        return logistic
    return logistic + (["mlp"] if smallest_class(y, rows) >= MLP_MIN_PER_CLASS else [])


def choose(features: list[np.ndarray], y: np.ndarray, rows: np.ndarray, n_classes: int, cfg: FusionConfig, options: list[str]) -> str:
    """The option with the lowest mean log-loss over inner stratified folds of ``rows`` (training rows only).
    With fewer than two rows in some class there is nothing to cross-validate: C=0.1 (the middle), or the only option."""
    from sklearn.model_selection import StratifiedKFold

    smallest = smallest_class(y, rows)
    if len(options) == 1 or smallest < 2:
        return "logistic C=0.1" if "logistic C=0.1" in options else options[0]
    losses = {o: [] for o in options}
    for inner_train, inner_test in StratifiedKFold(min(INNER_FOLDS, smallest), shuffle=True, random_state=cfg.seed).split(rows, y[rows]):
        fit_rows, test_rows = rows[inner_train], rows[inner_test]
        for option in options:
            proba = member_proba(fit_member(features, y, fit_rows, None, n_classes, cfg, option), features, test_rows, n_classes)
            losses[option].append(-np.mean(np.log(np.clip(proba[np.arange(len(test_rows)), y[test_rows]], 1e-7, 1.0))))
    return min(options, key=lambda o: np.mean(losses[o]))


@register
class FusionHead(Head):
    """One late-fusion model per feature set in ``feature_sets``; ``predict_proba`` averages them (the ensemble).

    ``fit(x, y)``: ``x`` maps each extractor to clip-level features [N, D] (the mean over time), ``y`` holds
    N class names. Early stopping uses ``validation`` = (x, y) when given, else a stratified 15% of ``x``.
    ``member_model``: "auto" (each member chooses by inner CV, see ``choose``; ``members_chosen_`` says what),
    "mlp" (the late-fusion network, as before) or "logistic" (C by inner CV).

    Applied to a store's clip (``predict_clip``): the class probabilities of the clip's mean features, as
    it was trained, and on its time line those of windows of ``window_s`` seconds (hop half a window).
    """

    kind = "fusion"
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        **FIT_RULES, "feature_sets": [NAME_SETS], "hidden": [Interval(int, 1)], "class_weights": [OneOf(("none", "balanced"))],
        "member_model": [OneOf(("auto", "mlp", "logistic"))],
    }

    def __init__(self, feature_sets: list[list[str]] | None = None, hidden: int = 64, dropout: float = 0.5, lr: float = 1e-3,
                 batch_size: int = 32, max_epochs: int = 400, patience: int = 30, class_weights: str = "none",
                 seed: int = 0, member_model: str = "auto") -> None:
        self.feature_sets = feature_sets
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.class_weights = class_weights
        self.seed = seed
        self.member_model = member_model

    @property
    def config(self) -> FusionConfig:
        return by_name(FusionConfig, self)

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> FusionHead:
        self.check_params()
        x, y, train, val = with_validation(x, y, validation)
        self.classes_ = sorted(set(y))
        codes = np.array([self.classes_.index(label) for label in y])
        n, cfg = len(self.classes_), self.config
        self.members_chosen_ = [choose([x[e] for e in member], codes, train, n, cfg, candidates(codes, train, self.member_model))
                                for member in self.feature_sets]
        self.members_ = [fit_member([x[e] for e in member], codes, train, val, n, cfg, choice)
                         for member, choice in zip(self.feature_sets, self.members_chosen_)]
        return self

    def member_proba(self, x: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Each member's [N, classes] probabilities."""
        rows = np.arange(len(next(iter(x.values()))))
        return [member_proba(m, [x[e] for e in member], rows, len(self.classes_)) for m, member in zip(self.members_, self.feature_sets)]

    def predict_proba(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.mean(self.member_proba(x), axis=0)

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.classes_)[self.predict_proba(x).argmax(axis=1)]

    def prediction_columns(self) -> list[str]:
        return class_columns(self.classes_)

    def predict_clip(self, clip: StoreClip, window_s: float = WINDOW_S) -> ClipPrediction:
        whole = self.predict_proba({e: clip_mean(v, t)[None] for e, (v, t) in clip.blocks.items()})[0]
        row = class_row(clip.clip_id, self.classes_, whole)

        def timeline() -> Timeline:
            spans = windows(clip.length, window_s)
            over_time = self.predict_proba(span_means(clip, spans))
            return Timeline(spans, {c: over_time[:, k] for k, c in enumerate(self.classes_)},
                            f"{clip.clip_id}: {row['predicted']} ({window_s:g} s windows)", "probability")

        return ClipPrediction(clip.clip_id, [row], timeline)

    def _tensors(self) -> dict:
        return {"members": [{"logistic": [torch.as_tensor(a) for a in (m.coef, m.intercept, m.codes)],
                             "standardiser": [scaler_tensors(s) for s in m.scalers]}
                            if isinstance(m, LogisticMember) else {"weights": m[0].state_dict(), "standardiser": [scaler_tensors(s) for s in m[1]]}
                            for m in self.members_]}

    def _facts(self) -> dict:
        return {"classes": self.classes_, "members_chosen": self.members_chosen_,
                "dims": [[s.n_features_in_ for s in (m.scalers if isinstance(m, LogisticMember) else m[1])] for m in self.members_]}

    def _restore(self, state: dict, facts: dict) -> None:
        self.classes_, self.members_ = facts["classes"], []
        self.members_chosen_ = facts.get("members_chosen", ["mlp"] * len(facts["dims"]))
        for saved, dims in zip(state["members"], facts["dims"]):
            scalers = [scaler_from(*(t.numpy() for t in s)) for s in saved["standardiser"]]
            if "logistic" in saved:
                self.members_.append(LogisticMember(scalers, *(t.numpy() for t in saved["logistic"])))
                continue
            model = built(lambda dims=dims: LateFusionClassifier(dims, len(self.classes_), self.config), torch.Generator())
            model.load_state_dict(saved["weights"])
            self.members_.append((model.eval(), scalers))
