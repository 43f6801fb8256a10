"""Clip-level action features: SlowFast R50 8x8 and I3D R50 (Kinetics-400, pytorchvideo).

Frames are decoded at 30 fps with a short side of 256 px. A window of 64
frames (2.13 s; stride configurable, non-overlapping by default) is sampled
the way pytorchvideo evaluates these models (UniformTemporalSubsample:
``linspace(0, 63, n)`` truncated to integers):
- SlowFast: 32 frames for the fast pathway, and ``linspace(0, 31, 8)`` of
  those for the slow pathway (alpha 4); centre crop 256;
- I3D R50: 8 frames; centre crop 224;
both scaled to [0, 1] and normalised with mean 0.45, std 0.225. Features are
the head's input (the pooled 2304-d SlowFast vector: 2048 slow + 256 fast;
the pooled 2048-d I3D vector); the ``*_logits`` variants store the 400
Kinetics class probabilities instead. ``per_shot=true`` gives one row per
shot from the ``shots`` extractor, the frames spread over the shot (MuVi's
action features per scene).

Memory: a clip is held decoded at 30 fps (a 3-minute clip at 256 x 455 is
about 1.9 GB); very long videos are better cut first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, TimeGrid, option
from mvfx.extractors.image_ops import centre_crop_normalise
from mvfx.extractors.registry import register
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.media.decode import Frames, VideoSpec
from mvfx.media.errors import ClipError
from mvfx.media.probe import ClipInfo


def uniform_subsample(n_available: int, n: int) -> np.ndarray:
    """pytorchvideo's UniformTemporalSubsample indices: linspace(0, T-1, n) truncated."""
    return np.linspace(0, n_available - 1, n).astype(np.int64)


def slowfast_indices(window: int = 64, fast: int = 32, alpha: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets within a window for the fast and the slow pathway."""
    fast_idx = uniform_subsample(window, fast)
    return fast_idx, fast_idx[uniform_subsample(fast, fast // alpha)]


@dataclass(frozen=True)
class VideoModelConfig(TorchConfig):
    fps: float = option(30.0, above=0)
    window_frames: int = option(64, minimum=1)
    stride_frames: int = option(64, minimum=1)
    short_side: int = option(256, minimum=1)
    per_shot: bool = False
    # batch_size (inherited) counts windows per forward pass


class _KineticsVideoModel(TorchExtractor):
    modality = "video"
    config_class = VideoModelConfig
    libraries = ("torch", "torchvision", "pytorchvideo")
    feature_dim: int
    logits = False
    cpu_batch_size = 1

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ("shots",) if self.config.per_shot else ()

    @property
    def input(self) -> VideoSpec:
        return VideoSpec(fps=self.config.fps, short_side=self.config.short_side)

    @property
    def time_grid(self) -> TimeGrid:
        if self.config.per_shot:
            return TimeGrid("window", None, None)
        c = self.config
        return TimeGrid("window", c.window_frames / c.fps, c.stride_frames / c.fps)

    @property
    def feature_names(self) -> list[str]:
        if self.logits:
            return self.weights_entry.category_names()
        return [f"{self.name}_{i:04d}" for i in range(self.feature_dim)]

    @property
    def crop(self) -> int:
        return self.weights_entry.preprocessing["crop"]

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        from mvfx.extractors.torchvision_compat import import_torchvision

        import_torchvision()  # before pytorchvideo imports it
        super().setup(device, random_weights)
        self._pooled = None
        self.model.blocks[-1].proj.register_forward_hook(self._keep_head_input)

    def _keep_head_input(self, module, inputs, output) -> None:
        self._pooled = inputs[0].mean(dim=(1, 2, 3))  # [B, T, H, W, C] -> [B, C]

    def windows(self, n_frames: int) -> list[tuple[int, int]]:
        """(start, stop) frame ranges: full windows every stride; a short clip gets one window over all of it."""
        c = self.config
        if n_frames <= c.window_frames:
            return [(0, n_frames)]
        return [(s, s + c.window_frames) for s in range(0, n_frames - c.window_frames + 1, c.stride_frames)]

    def spans(self, data: Frames, context: dict | None) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Frame ranges to run and the [start, end] seconds of each row."""
        if not self.config.per_shot:
            ranges = self.windows(len(data.images))
            return ranges, np.array([[data.times[a, 0], data.times[b - 1, 1]] for a, b in ranges])
        shots = context.get("shots")
        if shots is None:
            raise ClipError("extract", f"{self.name}: per-shot mode needs the shots extractor's rows")
        starts = data.times[:, 0]
        ranges = [(int(np.searchsorted(starts, a)), max(int(np.searchsorted(starts, b)), int(np.searchsorted(starts, a)) + 1))
                  for a, b in shots.times]
        return [(a, min(b, len(starts))) for a, b in ranges], shots.times

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        import torch

        if len(data.images) == 0:
            raise ClipError("extract", f"{info.path}: no frames for {self.name}")
        ranges, times = self.spans(data, context)
        rows = []
        with self.inference():
            for start in range(0, len(ranges), self.batch_size):
                clips = [self.clip_tensor(data.images[a:b]) for a, b in ranges[start : start + self.batch_size]]
                logits = self.forward(clips)
                out = torch.softmax(logits.float(), dim=1) if self.logits else self._pooled
                rows.append(out.float().cpu().numpy())
        return FeatureBlock(np.concatenate(rows), times)

    def clip_tensor(self, frames: np.ndarray) -> np.ndarray:
        """[T, H, W, 3] uint8 -> [3, T, crop, crop] normalised."""
        prep = self.weights_entry.preprocessing
        return centre_crop_normalise(frames, self.crop, prep["mean"], prep["std"]).transpose(1, 0, 2, 3)


class _SlowFast(_KineticsVideoModel):
    version = "1"
    weight_files = ("slowfast_r50_k400",)
    feature_dim = 2304
    mb_per_item = 400.0

    def build(self):
        from pytorchvideo.models.hub import slowfast_r50

        return slowfast_r50(pretrained=False)

    def forward(self, clips: list[np.ndarray]):

        fast_idx, slow_idx = slowfast_indices(64, 32, 4)
        fast, slow = [], []
        for clip in clips:
            idx = uniform_subsample(clip.shape[1], 64)  # windows shorter than 64 frames repeat frames
            fast.append(clip[:, idx[fast_idx]])
            slow.append(clip[:, idx[slow_idx]])
        return self.model([self.to_device(np.stack(slow)), self.to_device(np.stack(fast))])  # a fresh list each call: the model edits it in place


@register
class SlowFastR50(_SlowFast):
    name = "slowfast_r50"
    summary = "SlowFast R50 8x8 (Kinetics-400): 2304-d pooled features per 64-frame window (30 fps)"


@register
class SlowFastR50Logits(_SlowFast):
    name = "slowfast_r50_logits"
    summary = "SlowFast R50 8x8: the 400 Kinetics class probabilities per window"
    logits = True


class _I3D(_KineticsVideoModel):
    version = "1"
    weight_files = ("i3d_r50_k400",)
    feature_dim = 2048
    mb_per_item = 200.0

    def build(self):
        from pytorchvideo.models.hub import i3d_r50

        return i3d_r50(pretrained=False)

    def forward(self, clips: list[np.ndarray]):

        batch = np.stack([clip[:, uniform_subsample(clip.shape[1], 8)] for clip in clips])
        return self.model(self.to_device(batch))


@register
class I3D(_I3D):
    name = "i3d"
    summary = "I3D R50 8x8 (pytorchvideo, Kinetics-400): 2048-d per 64-frame window, or per shot"


@register
class I3DLogits(_I3D):
    name = "i3d_logits"
    summary = "I3D R50: the 400 Kinetics class probabilities per window or per shot"
    logits = True
