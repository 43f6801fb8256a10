"""Music-video correspondence: two towers, compact bilinear pooling, match classifier or contrastive retrieval.

Per modality: a linear layer to 64 units, then a CLIP-style projection head
(linear 64, GELU, linear 64, dropout 0.5, residual, layer norm, L2
normalisation). ``classify``: the two embeddings are fused by multimodal
compact bilinear pooling (Fukui et al. 2016: count sketches of both, product
in the Fourier domain = the count sketch of their outer product), then
signed square root and L2 normalisation, dense 32 + GELU, 2-way softmax
(mismatch / match). ``retrieve``: the towers alone, trained with the
contrastive loss on cosine distance d = 1 - cos (Hadsell et al. 2006:
matched pairs pulled to d = 0, mismatched pushed beyond a margin). Optional
emotion branches (a softmax over the emotion classes on each embedding) add
two cross-entropy losses with equal weight (multi-task).
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
class CorrespondConfig:
    embed: int = 64
    mcb_dim: int = 1024
    dense: int = 32
    dropout: float = 0.5
    margin: float = 1.0
    lr: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 600
    patience: int = 40
    emotion_branches: bool = False
    objective: str = "classify"  # or "retrieve"
    seed: int = 0


class CountSketch(nn.Module):
    """Fixed random count sketch R^n -> R^d: out[h(i)] += s(i) x[i]."""

    def __init__(self, n_in: int, d: int, generator: torch.Generator) -> None:
        super().__init__()
        self.d = d
        self.register_buffer("index", torch.randint(d, (n_in,), generator=generator))
        self.register_buffer("sign", torch.randint(2, (n_in,), generator=generator).float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device).index_add_(1, self.index, x * self.sign)


class CompactBilinearPooling(nn.Module):
    """Count sketch of the outer product x y^T, computed as IFFT(FFT(sketch x) * FFT(sketch y))."""

    def __init__(self, n_x: int, n_y: int, d: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.sketch_x, self.sketch_y = CountSketch(n_x, d, generator), CountSketch(n_y, d, generator)
        self.d = d

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        product = torch.fft.rfft(self.sketch_x(x), dim=1) * torch.fft.rfft(self.sketch_y(y), dim=1)
        return torch.fft.irfft(product, n=self.d, dim=1)


class ProjectionHead(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.norm(x + self.mlp(x)), dim=1)


class Tower(nn.Module):
    def __init__(self, n_in: int, cfg: CorrespondConfig) -> None:
        super().__init__()
        self.encode = nn.Linear(n_in, cfg.embed)
        self.project = ProjectionHead(cfg.embed, cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.encode(x))


class CorrespondenceModel(nn.Module):
    def __init__(self, video_dim: int, music_dim: int, n_emotions: int, cfg: CorrespondConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.video, self.music = Tower(video_dim, cfg), Tower(music_dim, cfg)
        if cfg.objective == "classify":
            self.mcb = CompactBilinearPooling(cfg.embed, cfg.embed, cfg.mcb_dim, cfg.seed)
            self.classifier = nn.Sequential(nn.Linear(cfg.mcb_dim, cfg.dense), nn.GELU(), nn.Linear(cfg.dense, 2))
        if cfg.emotion_branches:
            self.video_emotion, self.music_emotion = nn.Linear(cfg.embed, n_emotions), nn.Linear(cfg.embed, n_emotions)

    def match_logits(self, zv: torch.Tensor, zm: torch.Tensor) -> torch.Tensor:
        fused = self.mcb(zv, zm)
        fused = nn.functional.normalize(torch.sign(fused) * torch.sqrt(fused.abs() + 1e-12), dim=1)
        return self.classifier(fused)

    def pair_scores(self, zv: torch.Tensor, zm: torch.Tensor) -> torch.Tensor:
        """[Q, G] score of every video embedding with every music embedding: the model's own notion of fit,
        P(match) for ``classify``, cosine similarity for ``retrieve``."""
        if self.cfg.objective == "retrieve":
            return zv @ zm.T
        q, g = len(zv), len(zm)
        logits = self.match_logits(zv.repeat_interleave(g, dim=0), zm.repeat(q, 1))
        return torch.softmax(logits, dim=1)[:, 1].reshape(q, g)

    def forward(self, video: torch.Tensor, music: torch.Tensor) -> dict[str, torch.Tensor]:
        zv, zm = self.video(video), self.music(music)
        out = {"video": zv, "music": zm, "similarity": (zv * zm).sum(dim=1)}
        if self.cfg.objective == "classify":
            out["match_logits"] = self.match_logits(zv, zm)
        if self.cfg.emotion_branches:
            out["video_emotion"], out["music_emotion"] = self.video_emotion(zv), self.music_emotion(zm)
        return out

    def match_probability(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """P(match): the softmax of the classifier, or the cosine similarity mapped to [0, 1] for retrieval."""
        if self.cfg.objective == "classify":
            return torch.softmax(out["match_logits"], dim=1)[:, 1]
        return (out["similarity"] + 1) / 2

    def loss(self, out: dict[str, torch.Tensor], match: torch.Tensor, video_emotion: torch.Tensor, music_emotion: torch.Tensor) -> torch.Tensor:
        if self.cfg.objective == "classify":
            loss = nn.functional.cross_entropy(out["match_logits"], match)
        else:
            distance = 1 - out["similarity"]
            positive = match.float()
            loss = (positive * distance**2 + (1 - positive) * torch.clamp(self.cfg.margin - distance, min=0) ** 2).mean()
        if self.cfg.emotion_branches:
            loss = loss + nn.functional.cross_entropy(out["video_emotion"], video_emotion)
            loss = loss + nn.functional.cross_entropy(out["music_emotion"], music_emotion)
        return loss


def validation_split(rows: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """15% of the pair groups among ``rows`` for early stopping, the rest to fit (no clip on both sides)."""
    from sklearn.model_selection import GroupShuffleSplit

    fit_idx, val_idx = next(GroupShuffleSplit(n_splits=1, test_size=0.15, random_state=seed).split(rows, groups=groups[rows]))
    return rows[fit_idx], rows[val_idx]


@register
class CorrespondHead(Head):
    """The correspondence model as an estimator over pairs.

    ``x`` maps "video" and "music" to clip-level features of each pair's two clips [P, D], "video_label" and
    "music_label" to their emotions and "group" to the pair group (pairs sharing a clip); ``y`` is match (0/1).
    """

    kind = "correspond"

    def __init__(self, video_features: str | None = None, music_features: str | None = None, embed: int = 64,
                 mcb_dim: int = 1024, dense: int = 32, dropout: float = 0.5, margin: float = 1.0, lr: float = 1e-4,
                 batch_size: int = 256, max_epochs: int = 600, patience: int = 40, emotion_branches: bool = False,
                 objective: str = "classify", seed: int = 0) -> None:
        self.video_features = video_features
        self.music_features = music_features
        self.embed = embed
        self.mcb_dim = mcb_dim
        self.dense = dense
        self.dropout = dropout
        self.margin = margin
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.emotion_branches = emotion_branches
        self.objective = objective
        self.seed = seed

    @property
    def features(self) -> list[str]:
        return [self.video_features, self.music_features]

    @property
    def config(self) -> CorrespondConfig:
        return CorrespondConfig(self.embed, self.mcb_dim, self.dense, self.dropout, self.margin, self.lr, self.batch_size,
                                self.max_epochs, self.patience, self.emotion_branches, self.objective, self.seed)

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> CorrespondHead:
        if validation is None:
            fit_rows, val_rows = validation_split(np.arange(len(y)), x["group"], self.seed)
        else:
            x = {k: np.concatenate([x[k], validation[0][k]]) for k in x}
            fit_rows, val_rows = np.arange(len(y)), np.arange(len(y), len(y) + len(validation[1]))
            y = np.concatenate([y, validation[1]])
        cfg = self.config
        self.emotions_ = sorted(set(x["video_label"]) | set(x["music_label"]))
        self.stats_ = {side: scaling(x[side][fit_rows]) for side in ("video", "music")}
        torch.manual_seed(cfg.seed)
        self.model_ = CorrespondenceModel(x["video"].shape[1], x["music"].shape[1], len(self.emotions_), cfg)
        tr, va = self._tensors_of(x, y, fit_rows), self._tensors_of(x, y, val_rows)
        model = self.model_
        fit(model, len(fit_rows), lambda b: model.loss(model(tr[0][b], tr[1][b]), tr[2][b], tr[3][b], tr[4][b]),
            lambda: float(model.loss(model(va[0], va[1]), *va[2:])),
            FitConfig(cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.seed))
        return self

    def _tensors_of(self, x: dict, y: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        codes = lambda labels: torch.as_tensor([self.emotions_.index(v) for v in labels[rows]])  # noqa: E731
        return (torch.as_tensor(scale(x["video"][rows], self.stats_["video"])), torch.as_tensor(scale(x["music"][rows], self.stats_["music"])),
                torch.as_tensor(np.asarray(y)[rows]), codes(x["video_label"]), codes(x["music_label"]))

    def embed_side(self, side: str, features: np.ndarray) -> np.ndarray:
        """Unit-norm embeddings [N, embed] of one modality's clip-level features."""
        tower = self.model_.video if side == "video" else self.model_.music
        self.model_.eval()
        with torch.no_grad():
            return tower(torch.as_tensor(scale(features, self.stats_[side]))).numpy()

    def predict_proba(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """[P, 2]: P(mismatch), P(match) of each pair."""
        self.model_.eval()
        with torch.no_grad():
            v, m = (torch.as_tensor(scale(x[side], self.stats_[side])) for side in ("video", "music"))
            p = self.model_.match_probability(self.model_(v, m)).numpy()
        return np.stack([1 - p, p], axis=1)

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def _tensors(self) -> dict:
        return {"weights": self.model_.state_dict(), "standardiser": {k: tensors(v) for k, v in self.stats_.items()}}

    def _facts(self) -> dict:
        return {"emotions": self.emotions_, "dims": [self.model_.video.encode.in_features, self.model_.music.encode.in_features]}

    def _restore(self, state: dict, facts: dict) -> None:
        self.emotions_ = facts["emotions"]
        self.model_ = CorrespondenceModel(*facts["dims"], len(self.emotions_), self.config)
        self.model_.load_state_dict(state["weights"])
        self.model_.eval()
        self.stats_ = {k: tuple(t.numpy() for t in v) for k, v in state["standardiser"].items()}
