"""MVF end-to-end classifiers and the unsupervised slow-fast autoencoder, trained from inputs cached in a store.

Inputs (one fixed-size tensor per clip, built once by ``load_inputs``):
- music: ``logmel_phase`` rows [T, 2 x 128] -> [2, 128, music_frames] (the centre 256 STFT frames, 5.9 s, by default;
  shorter clips are zero-padded); each channel standardised with the training clips' mean and spread;
- video: ``frames`` rows -> [3, N, S, S] uint8, resized to ``frame_size`` (64 by default, for CPUs; the cache
  keeps 112), scaled to [0, 1] and normalised at batch time;
- face: ``face_crops`` rows -> [1, N, 48, 48] uint8, likewise.

``MvfHead`` follows the head conventions (scikit-learn parameters, ``save``/``load_head``, ``mvfx predict``);
``pretrain_autoencoder`` writes encoder weights that ``MvfHead(init_from=...)`` starts from.
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from torch import nn

from mvfx.heads.application import WINDOW_S, ClipPrediction, ClipReader, batched, class_row
from mvfx.heads.estimator import BOOL, FIT_RULES, NONE, PATH, TEXT, Head, Rule, by_name, interval, options, register
from mvfx.heads.mvf_nets import ARCHITECTURES, ModalityNet, MvfClassifier, cross_modal_mmtm, parameter_count, run_stages
from mvfx.heads.torch_fit import FitConfig, fit
from mvfx.media.errors import MvfxError, MvfxWarning
from mvfx.stores.base import FeatureStore

MODALITY_FEATURES = {"music": "logmel_phase", "video": "frames", "face": "face_crops"}
MUSIC_FRAMES = 256
IMAGE_MEAN, IMAGE_STD = 0.45, 0.225  # the Kinetics-style normalisation of [0, 1] pixels
ENCODER_FILE = "encoders.pt"
PREDICT_BATCH = 16  # clips whose inputs are built and classified at once by ``MvfHead.predict_clips``


def _music(values: np.ndarray, frames: int = MUSIC_FRAMES) -> np.ndarray:
    """[T, 256] rows -> [2, 128, frames]: the centre ``frames`` STFT frames, zero-padded when shorter."""
    spec = values.reshape(len(values), 2, -1).transpose(1, 2, 0).astype(np.float32)
    out = np.zeros((*spec.shape[:2], frames), np.float32)
    start = max((spec.shape[2] - frames) // 2, 0)
    piece = spec[:, :, start : start + frames]
    out[:, :, : piece.shape[2]] = piece
    return out


def _images(values: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """[N, flat] uint8 rows of frames (H, W, C) or grey crops (H, W) -> [C, N, size, size] uint8."""
    frames = values.astype(np.uint8).reshape(len(values), *shape)
    resized = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) if f.shape[0] != size else f for f in frames]
    stack = np.stack(resized)
    return stack[None] if stack.ndim == 3 else stack.transpose(3, 0, 1, 2)


def clip_inputs(blocks: dict[str, np.ndarray], shapes: dict[str, tuple], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES, n_faces: int = 16) -> dict[str, np.ndarray]:
    """One clip's network inputs from its stored rows (``blocks``: extractor -> values).

    A clip in which no face was found (``face_crops`` stored zero crops) gets ``n_faces`` blank crops: its face
    branch sees zeros, the same for every faceless clip, and the music and video branches decide.
    """
    out = {}
    for m in modalities:
        values = blocks[MODALITY_FEATURES[m]]
        if m == "face" and len(values) == 0:
            out[m] = np.zeros((1, n_faces, *shapes[m][:2]), np.uint8)
        elif m == "music":
            out[m] = _music(values, music_frames)
        else:
            out[m] = _images(values, shapes[m], frame_size if m == "video" else shapes[m][0])
    return out


def load_inputs(store: FeatureStore, clip_ids: list[str], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES) -> dict[str, np.ndarray]:
    """Stacked inputs of every clip: modality -> [N, ...] (video and faces stay uint8)."""
    inputs, faceless = read_inputs(store, clip_ids, modalities, frame_size, music_frames)
    warn_faceless(store, faceless, len(clip_ids))
    return inputs


def warn_faceless(store: FeatureStore, faceless: int, n_clips: int) -> None:
    """One warning for all the clips without a face (their face input is blank)."""
    if faceless:
        warnings.warn(f"{store.location}: {faceless} of {n_clips} clips have no face; their face input is blank "
                      "(zero) crops", MvfxWarning, stacklevel=3)


def read_inputs(store: FeatureStore, clip_ids: list[str], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES) -> tuple[dict[str, np.ndarray], int]:
    """``load_inputs`` without its warning: the stacked inputs and how many of the clips have no face."""
    shapes = {m: tuple(store.attrs(MODALITY_FEATURES[m])["value_shape"]) for m in modalities}
    n_faces = store.attrs("face_crops")["config"].get("n_crops", 16) if "face" in modalities else 16
    blocks = [{MODALITY_FEATURES[m]: store.read(MODALITY_FEATURES[m], c)[0] for m in modalities} for c in clip_ids]
    faceless = sum(1 for b in blocks if "face" in modalities and len(b["face_crops"]) == 0)
    per_clip = [clip_inputs(b, shapes, modalities, frame_size, music_frames, n_faces) for b in blocks]
    for m in modalities:  # one clip off is one line naming it, not np.stack's "all input arrays must have the same shape"
        shapes_seen = Counter(p[m].shape for p in per_clip)
        usual = shapes_seen.most_common(1)[0][0] if shapes_seen else None
        odd = [c for c, p in zip(clip_ids, per_clip) if p[m].shape != usual]
        if odd:
            raise MvfxError(f"{store.location}: clip {odd[0]} has a {m} input of shape {per_clip[clip_ids.index(odd[0])][m].shape}, "
                            f"{len(clip_ids) - len(odd)} others {usual} ({len(odd)} clip(s) off); re-extract "
                            f"{MODALITY_FEATURES[m]} for it with the current extractor (`mvfx extract ... -e {MODALITY_FEATURES[m]}`)")
    return {m: np.stack([p[m] for p in per_clip]) for m in modalities}, faceless


def check_modalities(store: FeatureStore, modalities: list[str]) -> None:
    for m in modalities:
        if MODALITY_FEATURES[m] not in store.extractors():
            raise MvfxError(f"{store.location}: the {m} network needs {MODALITY_FEATURES[m]} features; "
                            f"run `mvfx extract ... -e {MODALITY_FEATURES[m]}` first")


@dataclass
class Normaliser:
    """Per-channel standardisation of the music input; fixed scaling of images."""

    music_mean: np.ndarray | None = None
    music_std: np.ndarray | None = None

    @classmethod
    def fitted(cls, x: dict[str, np.ndarray]) -> Normaliser:
        if "music" not in x:
            return cls()
        music = x["music"]
        return cls(music.mean(axis=(0, 2, 3)).astype(np.float32), music.std(axis=(0, 2, 3)).astype(np.float32) + 1e-6)

    def tensors(self, x: dict[str, np.ndarray], rows: np.ndarray, device: str) -> dict[str, torch.Tensor]:
        out = {}
        for m, values in x.items():
            t = torch.as_tensor(values[rows]).to(device)
            if m == "music":
                mean = torch.as_tensor(self.music_mean, device=device).view(1, -1, 1, 1)
                out[m] = (t - mean) / torch.as_tensor(self.music_std, device=device).view(1, -1, 1, 1)
            else:
                out[m] = (t.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD
        return out


def autocast(device: str):
    """bf16 autocast on a GPU (batched mixed precision), nothing on the CPU."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@register
class MvfHead(Head):
    """MVF networks for emotion classes: ``music``/``video``/``face`` name each used modality's architecture
    (A0-A3, None = unused); ``mmtm`` joins music and video; ``se`` adds squeeze-and-excitation to every block.

    ``fit(x, y)``: ``x`` maps modalities to stacked inputs (``load_inputs``), ``y`` holds class names.
    ``init_from``: a folder from ``pretrain_autoencoder`` whose encoders start the music and video networks.
    Applied to a store (``predict_clips``): one row per clip from its cached inputs (frames spread over the whole
    clip), so no time line.
    """

    kind = "mvf"
    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        **FIT_RULES, **{m: [options(*ARCHITECTURES), NONE] for m in MODALITY_FEATURES}, "mmtm": [BOOL], "se": [BOOL],
        "frame_size": [interval(int, 1)], "music_frames": [interval(int, 1)], "init_from": [PATH, NONE], "device": [TEXT],
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
        torch.manual_seed(self.seed)
        try:
            model = MvfClassifier(self.architectures, n_classes, self.mmtm, self.se, self.dropout)
        except ValueError as exc:
            raise MvfxError(str(exc)) from None
        if self.init_from:
            load_encoders(model, self.init_from)
        return model

    def fit(self, x: dict[str, np.ndarray], y: np.ndarray, validation: tuple | None = None) -> MvfHead:
        from mvfx.heads.classify import inner_validation

        self.check_params()
        self.classes_ = sorted(set(y) | (set(validation[1]) if validation else set()))
        if validation is not None:
            x = {m: np.concatenate([x[m], validation[0][m]]) for m in x}
            y = np.concatenate([y, validation[1]])
        codes = np.array([self.classes_.index(label) for label in y])
        if validation is None:
            train, val = inner_validation(np.arange(len(y)), codes, self.seed)
        else:
            train, val = np.arange(len(y) - len(validation[1])), np.arange(len(y) - len(validation[1]), len(y))
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

    def predict_clips(self, clips: ClipReader, window_s: float = WINDOW_S) -> Iterator[ClipPrediction]:
        """One row per clip, ``PREDICT_BATCH`` clips' inputs built and classified at a time; no time line."""
        store, modalities, shapes, faceless = clips.store, list(self.architectures), None, 0
        for part in batched(clips.clip_ids, PREDICT_BATCH):
            x, no_face = read_inputs(store, part, modalities, self.frame_size, self.music_frames)
            faceless += no_face
            seen = {m: v.shape[1:] for m, v in x.items()}
            if shapes is not None and seen != shapes:  # load_inputs checks within a batch; this, across batches
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


# --- the unsupervised slow-fast autoencoder ---------------------------------------------------------------------

class _Decoder(nn.Module):
    """Transposed convolutions from a network's last map back up, interpolated to the input's exact size."""

    def __init__(self, dims: int, widths: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        up = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        layers, chans = [], list(reversed(widths))
        for cin, cout in zip(chans, [*chans[1:], chans[-1]]):
            layers += [up(cin, cout, 4, 2, 1), norm(cout), nn.ReLU(inplace=True)]
        layers.append((nn.Conv3d if dims == 3 else nn.Conv2d)(chans[-1], out_channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        y = self.net(z)
        if y.shape[2:] != shape[2:]:  # e.g. A3's slow pathway: fewer time steps than the input
            y = nn.functional.interpolate(y, size=shape[2:], mode="trilinear" if y.dim() == 5 else "bilinear", align_corners=False)
        return y


class SlowFastAutoencoder(nn.Module):
    """Music and video encoders (the classifier's ``ModalityNet``s, joined by MMTM) and decoders that rebuild the
    normalised log-mel + phase image and the frame stack from the encoders' last maps; trained with MSE."""

    def __init__(self, music: str, video: str, mmtm: bool = True, se: bool = False) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"music": ModalityNet("music", music, se), "video": ModalityNet("video", video, se)})
        self.mmtm = cross_modal_mmtm(self.nets) if mmtm else None
        self.decoders = nn.ModuleDict({
            m: _Decoder(net.dims, net.channels, 2 if m == "music" else 3) for m, net in self.nets.items()
        })

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states = run_stages(dict(self.nets), inputs, self.mmtm)
        return {m: self.decoders[m](self.nets[m].joint(states[m]), inputs[m].shape) for m in self.nets}


def pretrain_autoencoder(x: dict[str, np.ndarray], out: str | Path, music: str = "A0", video: str = "A3", mmtm: bool = True,
                         se: bool = False, lr: float = 1e-3, batch_size: int = 8, epochs: int = 20, device: str = "cpu",
                         seed: int = 0, on_epoch=None) -> dict:
    """Train the autoencoder on every clip of ``x`` (no labels); save the encoders and the loss curve to ``out``."""
    torch.manual_seed(seed)
    model = SlowFastAutoencoder(music, video, mmtm, se).to(device)
    normaliser = Normaliser.fitted(x)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n, losses = len(x["music"]), []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            inputs = normaliser.tensors(x, batch.numpy(), device)
            with autocast(device):
                rebuilt = model(inputs)
                loss = sum(nn.functional.mse_loss(rebuilt[m].float(), inputs[m]) for m in inputs)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / n)
        if on_epoch:
            on_epoch(epoch, losses[-1])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({m: net.state_dict() for m, net in model.nets.items()} | ({"mmtm": model.mmtm.state_dict()} if model.mmtm else {}),
               out / ENCODER_FILE)
    summary = {"music": music, "video": video, "mmtm": mmtm, "se": se, "clips": n, "epochs": epochs, "loss": losses,
               "parameters": {m: parameter_count(net) for m, net in model.nets.items()} | {"total": parameter_count(model)}}
    (out / "autoencoder.json").write_text(json.dumps(summary, indent=2))
    return summary


def load_encoders(model: MvfClassifier, folder: str | Path) -> None:
    """Start a classifier's music and video networks (and MMTM) from a pre-trained autoencoder's encoders."""
    folder = Path(folder)
    path, about = folder / ENCODER_FILE, folder / "autoencoder.json"
    if not path.is_file() or not about.is_file():
        raise MvfxError(f"{folder}: no pre-trained encoders ({ENCODER_FILE}); make them with `mvfx train autoencoder`")
    trained = json.loads(about.read_text())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for m in ("music", "video"):
        if m in model.nets:
            if model.nets[m].arch != trained[m] or model.nets[m].squeeze_excite != trained["se"]:
                raise MvfxError(f"{folder}: the encoders are music {trained['music']}, video {trained['video']}"
                                f"{' with SE' if trained['se'] else ''}; train the classifier with the same (--{m} {trained[m]})")
            model.nets[m].load_state_dict(saved[m])
    if model.mmtm is not None and "mmtm" in saved:
        model.mmtm.load_state_dict(saved["mmtm"])
