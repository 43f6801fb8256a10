"""Shot boundaries with PySceneDetect's ContentDetector, on frames decoded once by mvfx.

Frames at 25 fps (short side 144 px) go straight into the detector (in
OpenCV's BGR order, which it expects), so detecting shots costs no second
decode. Each row is one shot: times = [start, end) seconds, values =
(shot index, duration). Per-shot extractors (``-o i3d.per_shot=true``) read
these rows instead of detecting again.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import Config, Extractor, FeatureBlock, TimeGrid, option
from mvfx.extractors.registry import register
from mvfx.media.decode import Frames, VideoSpec
from mvfx.media.probe import ClipInfo


@dataclass(frozen=True)
class ShotsConfig(Config):
    threshold: float = option(27.0, above=0)
    min_shot_s: float = option(0.6, minimum=0)
    fps: float = option(25.0, above=0)
    short_side: int = option(144, minimum=8)


@register
class Shots(Extractor):
    name = "shots"
    version = "1"
    modality = "video"
    summary = "PySceneDetect ContentDetector shot boundaries: one row per shot (index, duration)"
    config_class = ShotsConfig
    libraries = ("scenedetect",)

    @property
    def input(self) -> VideoSpec:
        return VideoSpec(fps=self.config.fps, short_side=self.config.short_side)

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("window", None, None)

    @property
    def feature_names(self) -> list[str]:
        return ["shot_index", "duration_s"]

    def cut_times(self, frames: Frames) -> list[float]:
        """Seconds at which a new shot starts (cuts), in order."""
        from scenedetect import ContentDetector, FrameTimecode

        c = self.config
        detector = ContentDetector(threshold=c.threshold, min_scene_len=max(1, int(round(c.min_shot_s * c.fps))))
        cuts = []
        for k, rgb in enumerate(frames.images):
            cuts += detector.process_frame(FrameTimecode(k, c.fps), np.ascontiguousarray(rgb[..., ::-1]))
        cuts += detector.post_process(FrameTimecode(max(len(frames.images) - 1, 0), c.fps))
        return [float(frames.times[cut.frame_num, 0]) for cut in cuts if 0 < cut.frame_num < len(frames.times)]

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        end = float(data.times[-1, 1]) if len(data.times) else 0.0
        edges = [0.0, *self.cut_times(data), end]
        spans = np.array([[a, b] for a, b in itertools.pairwise(edges) if b > a])
        values = np.stack([np.arange(len(spans)), spans[:, 1] - spans[:, 0]], axis=1)
        return FeatureBlock(values, spans)
