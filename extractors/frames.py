"""Raw RGB frames cached for networks that train end to end on video (the MVF video stream).

``n_frames`` frames spread evenly over the clip (or a fixed ``fps``), the short
side scaled to ``size`` and the centre ``size`` x ``size`` square kept (the usual
video-network input, without distorting the aspect ratio). Stored as uint8, one
row per frame flattened from (size, size, 3); ``value_shape`` records the shape.
16 frames at 112 x 112 are 602 kB a clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import Config, Extractor, FeatureBlock, OptionError, TimeGrid, option
from mvfx.extractors.registry import register
from mvfx.extractors.streams import FrameByFrame
from mvfx.media.decode import Frames, VideoSpec
from mvfx.media.probe import ClipInfo


@dataclass(frozen=True)
class FramesConfig(Config):
    n_frames: int = option(16, minimum=0)  # spread over the clip; 0 = sample at ``fps`` instead
    fps: float = option(0.0, minimum=0)
    size: int = option(112, minimum=8)

    def validate(self) -> None:
        if (self.n_frames > 0) == (self.fps > 0):
            raise OptionError("n_frames", self.n_frames, "give exactly one of n_frames > 0 or fps > 0")


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centre size x size square of a frame whose short side is already ``size``."""
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


@register
class RgbFrames(FrameByFrame, Extractor):
    name = "frames"
    version = "2"  # 2: N frames spread over the video stream's own span, always N (1 gave fewer when the video ended early)
    modality = "video"
    summary = "N RGB frames spread over the clip (or a fixed fps), centre square at size x size, uint8 (MVF video stream)"
    config_class = FramesConfig
    storage_dtype = "uint8"

    @property
    def input(self) -> VideoSpec:
        c = self.config
        if c.n_frames:
            return VideoSpec(n_frames=c.n_frames, short_side=c.size)
        return VideoSpec(fps=c.fps, short_side=c.size)

    @property
    def time_grid(self) -> TimeGrid:
        step = 1.0 / self.config.fps if self.config.fps else None
        return TimeGrid("frame", step, step)

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (self.config.size, self.config.size, 3)

    @property
    def feature_names(self) -> list[str]:
        size = self.config.size
        return [f"{channel}_{r}_{c}" for r in range(size) for c in range(size) for channel in "rgb"]

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        size = self.config.size
        rows = [centre_square(img, size).reshape(-1) for img in data.images]
        values = np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.dim), np.float32)
        return FeatureBlock(values, data.times)
