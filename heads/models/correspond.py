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

Applied to a store (``CorrespondHead.predict_clips``), each clip gets P(match) of its own music and video
and the ``NEIGHBOURS`` music clips that fit its video best. Memory stays bounded: a first pass reads the
clips one at a time and keeps only their embeddings ([N, embed] per modality), a second ranks the music
for blocks of videos (``nearest``), never holding the [N, N] score matrix. Time is still N x N scores:
cheap dot products for ``retrieve``, the bilinear-pooling classifier on every pair for ``classify``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader, StoreClip, Timeline, batched, span_means, windows
from mvfx.heads.data.align import clip_mean
from mvfx.heads.data.dataset import with_validation
from mvfx.heads.estimator import Head, by_name, register
from mvfx.heads.standardiser import fit_scaler, scaler_from, scaler_tensors, standardise
from mvfx.heads.torch_fit import FIT_RULES, FitConfig, fit
from mvfx.heads.torch_random import Dropout, built
from mvfx.media.rules import BOOL, TEXT, Interval, OneOf, Rule

NEIGHBOURS = 3  # best-fitting music clips listed per clip
EMBED_BATCH = 256  # clips embedded at once in prediction's first pass
# videos x music clips scored at once when ranking: the classifier materialises every pair (mcb_dim floats each)
SCORE_BLOCK = {"retrieve": (256, 4096), "classify": (32, 128)}


@dataclass(frozen=True)
class CorrespondConfig:
    """``CorrespondHead``'s parameters that the networks and their training read (``CorrespondHead.config``;
    defaults there)."""

    embed: int
    mcb_dim: int
    dense: int
    dropout: float
    margin: float
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    emotion_branches: bool
    objective: str  # "classify" or "retrieve"
    seed: int


class CountSketch(nn.Module):
    """Fixed random count sketch R^n -> R^d: out[h(i)] += s(i) x[i]; the hash h and signs s are drawn by
    ``initialise`` (``torch_random.built`` calls it)."""

    def __init__(self, n_in: int, d: int) -> None:
        super().__init__()
        self.d = d
        self.register_buffer("index", torch.zeros(n_in, dtype=torch.long))
        self.register_buffer("sign", torch.ones(n_in))

    def initialise(self, generator: torch.Generator) -> None:
        self.index.copy_(torch.randint(self.d, self.index.shape, generator=generator))
        self.sign.copy_(torch.randint(2, self.sign.shape, generator=generator).float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device).index_add_(1, self.index, x * self.sign)


class CompactBilinearPooling(nn.Module):
    """Count sketch of the outer product x y^T, computed as IFFT(FFT(sketch x) * FFT(sketch y))."""

    def __init__(self, n_x: int, n_y: int, d: int) -> None:
        super().__init__()
        self.sketch_x, self.sketch_y = CountSketch(n_x, d), CountSketch(n_y, d)
        self.d = d

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        product = torch.fft.rfft(self.sketch_x(x), dim=1) * torch.fft.rfft(self.sketch_y(y), dim=1)
        return torch.fft.irfft(product, n=self.d, dim=1)


class ProjectionHead(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), Dropout(dropout))
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
            self.mcb = CompactBilinearPooling(cfg.embed, cfg.embed, cfg.mcb_dim)
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


def nearest(scores: Callable[[slice, slice], np.ndarray], n_query: int, n_gallery: int, k: int,
            block: tuple[int, int]) -> np.ndarray:
    """[n_query, min(k, n_gallery)] gallery indices, best first, of each query: what
    ``np.argsort(-all_scores, kind="stable")[:, :k]`` gives (ties to the lower index), computed for
    ``block`` = (queries, gallery items) at a time, so only one block of scores is ever held.
    ``scores(q, g)`` returns the [len(q), len(g)] scores of the queries and gallery items in the slices."""
    k = min(k, n_gallery)
    out = np.zeros((n_query, k), np.int64)
    for q0 in range(0, n_query, block[0]):
        q = slice(q0, min(q0 + block[0], n_query))
        best_s, best_i = np.zeros((q.stop - q0, 0)), np.zeros((q.stop - q0, 0), np.int64)
        for g0 in range(0, n_gallery, block[1]):
            s = scores(q, slice(g0, min(g0 + block[1], n_gallery))).astype(np.float64)
            s[np.isnan(s)] = -np.inf
            top = _top_k(s, k)
            # earlier blocks hold lower indices, so a stable sort of [best, block] keeps ties in index order
            cand_s, cand_i = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1), np.concatenate([best_i, top + g0], 1)
            order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
        out[q] = best_i
    return out


def _top_k(s: np.ndarray, k: int) -> np.ndarray:
    """[Q, min(k, G)] columns of the k largest of each row of ``s``, in column order; ties go to lower columns."""
    k = min(k, s.shape[1])
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th largest value
    above = s > kth
    ties = s == kth
    take = above | (ties & (np.cumsum(ties, axis=1) <= k - above.sum(axis=1, keepdims=True)))
    return np.nonzero(take)[1].reshape(len(s), k)


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
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        **FIT_RULES, "video_features": [TEXT], "music_features": [TEXT], "embed": [Interval(int, 1)], "mcb_dim": [Interval(int, 1)],
        "dense": [Interval(int, 1)], "margin": [Interval(float, 0, low_open=True)], "emotion_branches": [BOOL],
        "objective": [OneOf(("classify", "retrieve"))],
    }

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
        return by_name(CorrespondConfig, self)

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> CorrespondHead:
        self.check_params()
        x, y, fit_rows, val_rows = with_validation(x, y, validation)
        if val_rows is None:
            fit_rows, val_rows = validation_split(fit_rows, x["group"], self.seed)
        cfg = self.config
        self.emotions_ = sorted(set(x["video_label"]) | set(x["music_label"]))
        self.scalers_ = {side: fit_scaler(x[side][fit_rows]) for side in ("video", "music")}
        self.model_ = built(lambda: CorrespondenceModel(x["video"].shape[1], x["music"].shape[1], len(self.emotions_), cfg),
                            torch.Generator().manual_seed(cfg.seed))
        tr, va = self._tensors_of(x, y, fit_rows), self._tensors_of(x, y, val_rows)
        model = self.model_
        fit(model, len(fit_rows), lambda b: model.loss(model(tr[0][b], tr[1][b]), tr[2][b], tr[3][b], tr[4][b]),
            lambda: float(model.loss(model(va[0], va[1]), *va[2:])),
            by_name(FitConfig, cfg))
        return self

    def _tensors_of(self, x: dict, y: np.ndarray, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        codes = lambda labels: torch.as_tensor([self.emotions_.index(v) for v in labels[rows]])  # noqa: E731
        return (*(torch.as_tensor(standardise(self.scalers_[side], x[side][rows])) for side in ("video", "music")),
                torch.as_tensor(np.asarray(y)[rows]), codes(x["video_label"]), codes(x["music_label"]))

    def embed_side(self, side: str, features: np.ndarray) -> np.ndarray:
        """Unit-norm embeddings [N, embed] of one modality's clip-level features."""
        tower = self.model_.video if side == "video" else self.model_.music
        self.model_.eval()
        with torch.no_grad():
            return tower(torch.as_tensor(standardise(self.scalers_[side], features))).numpy()

    def predict_proba(self, x: dict[str, np.ndarray]) -> np.ndarray:
        """[P, 2]: P(mismatch), P(match) of each pair."""
        self.model_.eval()
        with torch.no_grad():
            v, m = (torch.as_tensor(standardise(self.scalers_[side], x[side])) for side in ("video", "music"))
            p = self.model_.match_probability(self.model_(v, m)).numpy()
        return np.stack([1 - p, p], axis=1)

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)

    def pair_scores(self, video: np.ndarray, music: np.ndarray) -> np.ndarray:
        """[V, M] the model's fit of every video embedding with every music embedding (``embed_side``'s)."""
        with torch.no_grad():
            return self.model_.pair_scores(torch.as_tensor(video), torch.as_tensor(music)).numpy()

    def prediction_columns(self) -> list[str]:
        return ["clip_id", "p_match_own_music", "best_music"]

    def predict_clips(self, clips: ClipReader, window_s: float = WINDOW_S) -> Iterator[ClipPrediction]:
        """Per clip, P(match) of its own music and video and the ``NEIGHBOURS`` music clips that fit its video
        best among ``clips``; its time line, P(match) over windows of ``window_s`` (hop half a window), reads
        the clip again. Two passes (see the module docstring): memory holds the embeddings, not the features."""
        sides = {"video": self.video_features, "music": self.music_features}
        own, embedded = [], {side: [] for side in sides}
        for part in batched(clips, EMBED_BATCH):
            whole = {side: np.stack([clip_mean(*c.blocks[e]) for c in part]) for side, e in sides.items()}
            own.append(self.predict_proba(whole)[:, 1])
            for side in sides:
                embedded[side].append(self.embed_side(side, whole[side]))
        own, video, music = np.concatenate(own), *(np.concatenate(embedded[side]) for side in sides)
        best = nearest(lambda q, g: self.pair_scores(video[q], music[g]), len(video), len(music), NEIGHBOURS,
                       SCORE_BLOCK[self.objective])
        ids = clips.clip_ids
        for k, clip_id in enumerate(ids):
            row = {"clip_id": clip_id, "p_match_own_music": float(own[k]), "best_music": ";".join(ids[j] for j in best[k])}
            yield ClipPrediction(clip_id, [row], lambda clip_id=clip_id: self._match_timeline(clips.read(clip_id), window_s))

    def _match_timeline(self, clip: StoreClip, window_s: float) -> Timeline:
        spans = windows(clip.length, window_s)
        means = span_means(clip, spans)
        p = self.predict_proba({"video": means[self.video_features], "music": means[self.music_features]})[:, 1]
        return Timeline(spans, {"P(match) of its own music": p}, f"{clip.clip_id}: does the music fit the video?", "P(match)")

    def _tensors(self) -> dict:
        return {"weights": self.model_.state_dict(), "standardiser": {k: scaler_tensors(v) for k, v in self.scalers_.items()}}

    def _facts(self) -> dict:
        return {"emotions": self.emotions_, "dims": [self.model_.video.encode.in_features, self.model_.music.encode.in_features]}

    def _restore(self, state: dict, facts: dict) -> None:
        self.emotions_ = facts["emotions"]
        self.model_ = built(lambda: CorrespondenceModel(*facts["dims"], len(self.emotions_), self.config), torch.Generator())
        self.model_.load_state_dict(state["weights"])
        self.model_.eval()
        self.scalers_ = {k: scaler_from(*(t.numpy() for t in v)) for k, v in state["standardiser"].items()}
