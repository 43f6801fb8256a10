"""MVF end-to-end emotion classifiers (Pandeya, Bhattarai & Lee 2021), trained from inputs cached in a store.

The networks are in ``mvf_nets``; their inputs (one fixed-size array per clip and modality) are read by
``heads.data.mvf_inputs``. At batch time the music input is standardised per channel with the training clips'
mean and spread, and frames and face crops are scaled to [0, 1] and normalised (``mvf_nets.Normaliser``).

``MvfHead`` follows the head conventions (scikit-learn parameters, ``saved.save``/``saved.load_head``, ``mvfx predict``);
``init_from`` starts its music and video networks from the autoencoder's encoders (``autoencoder``).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader, batched, class_columns, class_row
from mvfx.heads.data.dataset import inner_validation, with_validation
from mvfx.heads.data.mvf_inputs import MODALITY_FEATURES, MUSIC_FRAMES, read_inputs, warn_faceless
from mvfx.heads.estimator import Head, by_name, register
from mvfx.heads.models.autoencoder import load_encoders
from mvfx.heads.models.mvf_nets import ARCHITECTURES, MvfClassifier, Normaliser, autocast, parameter_count
from mvfx.heads.torch_fit import FIT_RULES, FitConfig, fit
from mvfx.heads.torch_random import built
from mvfx.media.errors import MvfxError
from mvfx.media.rules import BOOL, NONE, PATH, TEXT, Interval, OneOf, Rule

PREDICT_BATCH = 16  # clips whose inputs are built and classified at once by ``MvfHead.predict_clips``


@register
class MvfHead(Head):
    """MVF networks for emotion classes: ``music``/``video``/``face`` name each used modality's architecture
    (A0-A3, None = unused); ``mmtm`` joins music and video; ``se`` adds squeeze-and-excitation to every block.

    ``fit(x, y)``: ``x`` maps modalities to stacked inputs (``mvf_inputs.load_inputs``), ``y`` holds class names.
    ``init_from``: a folder from ``mvfx train autoencoder`` whose encoders start the music and video networks.
    Applied to a store (``predict_clips``): one row per clip from its cached inputs (frames spread over the whole
    clip, read through the ``ClipReader``'s store), so no time line.
    """

    kind = "mvf"
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        **FIT_RULES, **{m: [OneOf(ARCHITECTURES), NONE] for m in MODALITY_FEATURES}, "mmtm": [BOOL], "se": [BOOL],
        "frame_size": [Interval(int, 1)], "music_frames": [Interval(int, 1)], "init_from": [PATH, NONE], "device": [TEXT],
    }

    def __init__(self, music: str | None = None, video: str | None = None, face: str | None = None, mmtm: bool = False,
                 se: bool = False, frame_size: int = 64, music_frames: int = MUSIC_FRAMES, lr: float = 1e-3, batch_size: int = 8,
                 max_epochs: int = 40, patience: int = 8, dropout: float = 0.3, init_from: str | None = None, device: str = "cpu",
                 seed: int = 0) -> None:
        self.music, self.video, self.face = music, video, face
        self.mmtm, self.se, self.frame_size, self.music_frames = mmtm, se, frame_size, music_frames
        self.lr, self.batch_size, self.max_epochs, self.patience, self.dropout = lr, batch_size, max_epochs, patience, dropout
        self.init_from, self.device, self.seed = init_from, device, seed

    @property
    def architectures(self) -> dict[str, str]:
        chosen = {m: a for m, a in (("music", self.music), ("video", self.video), ("face", self.face)) if a}
        if not chosen:
            raise MvfxError("give at least one of --music, --video, --face")
        return chosen

    def build(self, n_classes: int) -> MvfClassifier:
        """The classifier, its weights drawn from a generator seeded with ``seed`` (or the autoencoder's encoders)."""
        try:
            model = built(lambda: MvfClassifier(self.architectures, n_classes, self.mmtm, self.se, self.dropout),
                          torch.Generator().manual_seed(self.seed))
        except ValueError as exc:
            raise MvfxError(str(exc)) from None
        if self.init_from:
            load_encoders(model, self.init_from)
        return model

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> MvfHead:
        self.check_params()
        x, y, train, val = with_validation(x, y, validation)
        self.classes_ = sorted(set(y))
        codes = np.array([self.classes_.index(label) for label in y])
        if val is None:
            train, val = inner_validation(train, codes, self.seed)
        self.normaliser_ = Normaliser.fitted({m: v[train] for m, v in x.items()})
        self.model_ = self.build(len(self.classes_)).to(self.device)
        target = torch.as_tensor(codes, device=self.device)
        loss_fn = nn.CrossEntropyLoss()

        def batch_loss(batch: torch.Tensor) -> torch.Tensor:
            rows = train[batch.numpy()]
            with autocast(self.device):
                return loss_fn(self.model_(self.normaliser_.tensors(x, rows, self.device)).float(), target[rows])

        def val_loss() -> float:
            with autocast(self.device):
                return float(loss_fn(self._logits(x, val).float(), target[val]))

        self.epochs_ = fit(self.model_, len(train), batch_loss, val_loss,
                           by_name(FitConfig, self)) + 1
        self.model_.to("cpu")
        return self

    def _logits(self, x: dict[str, np.ndarray], rows: np.ndarray) -> torch.Tensor:
        device = next(self.model_.parameters()).device.type
        return torch.cat([self.model_(self.normaliser_.tensors(x, part, device)) for part in np.array_split(rows, max(1, len(rows) // 16))])

    def predict_proba(self, x: dict[str, np.ndarray]) -> np.ndarray:
        self.model_.eval()
        with torch.no_grad():
            return torch.softmax(self._logits(x, np.arange(len(next(iter(x.values()))))).float(), dim=1).numpy()

    def predict(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return np.array(self.classes_)[self.predict_proba(x).argmax(axis=1)]

    def prediction_columns(self) -> list[str]:
        return class_columns(self.classes_)

    def predict_clips(self, clips: ClipReader, window_s: float = WINDOW_S) -> Iterator[ClipPrediction]:
        """One row per clip, ``PREDICT_BATCH`` clips' inputs built and classified at a time; no time line."""
        store, modalities, shapes, faceless = clips.store, list(self.architectures), None, 0
        for part in batched(clips.clip_ids, PREDICT_BATCH):
            x, no_face = read_inputs(store, part, modalities, self.frame_size, self.music_frames)
            faceless += no_face
            seen = {m: v.shape[1:] for m, v in x.items()}
            if shapes is not None and seen != shapes:  # read_inputs checks within a batch; this, across batches
                raise MvfxError(f"{store.location}: clip {part[0]} has inputs of shapes {seen}, earlier clips {shapes}; "
                                f"re-extract {', '.join(MODALITY_FEATURES[m] for m in modalities)} for it with the current extractors")
            shapes = seen
            yield from (ClipPrediction(c, [class_row(c, self.classes_, p)]) for c, p in zip(part, self.predict_proba(x)))
        warn_faceless(store, faceless, len(clips))

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of every branch, the MMTM and the classifier layer, and in all."""
        counts = {m: parameter_count(net) for m, net in self.model_.nets.items()}
        if self.model_.mmtm is not None:
            counts["mmtm"] = parameter_count(self.model_.mmtm)
        counts["classifier"] = parameter_count(self.model_.head)
        counts["total"] = parameter_count(self.model_)
        return counts

    def _tensors(self) -> dict:
        return {"weights": self.model_.state_dict(),
                "music_mean": torch.as_tensor(self.normaliser_.music_mean if self.normaliser_.music_mean is not None else []),
                "music_std": torch.as_tensor(self.normaliser_.music_std if self.normaliser_.music_std is not None else [])}

    def _facts(self) -> dict:
        return {"classes": self.classes_, "epochs": self.epochs_, "parameters": self.parameter_counts()}

    def _restore(self, state: dict, facts: dict) -> None:
        self.classes_, self.epochs_ = facts["classes"], facts["epochs"]
        self.init_from = None  # the saved weights already hold what the encoders gave
        self.model_ = self.build(len(self.classes_))
        self.model_.load_state_dict(state["weights"])
        self.model_.eval()
        mean, std = state["music_mean"].numpy(), state["music_std"].numpy()
        self.normaliser_ = Normaliser(mean if mean.size else None, std if std.size else None)
