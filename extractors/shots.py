"""Shot boundaries with PySceneDetect's ContentDetector, on frames decoded once by mvfx.

Frames at 25 fps (short side 144 px) go straight into the detector (in
OpenCV's BGR order, which it expects), so detecting shots costs no second
decode; the detector sees them one at a time as they are decoded, keeping
only its own state. Each row is one shot: times = [start, end) seconds, values =
(shot index, duration). Per-shot extractors (``-o i3d.per_shot=true``) read
these rows instead of detecting again.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import Config, Extractor, FeatureBlock, TimeGrid, option
from mvfx.extractors.registry import register
from mvfx.extractors.streams import Stream, through_stream
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

    def stream(self, info: ClipInfo, context: dict) -> Stream:
        return ShotStream(self, info, context)

    def frames_held(self, piece: int, info: ClipInfo) -> int:
        return 0

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        return through_stream(self, data, info, context)


class ShotStream(Stream):
    """PySceneDetect is built to see one frame at a time: feed it frames as they are decoded."""

    def __init__(self, extractor: Shots, info: ClipInfo, context: dict) -> None:
        from scenedetect import ContentDetector

        super().__init__(extractor, info, context)
        c = extractor.config
        self.detector = ContentDetector(threshold=c.threshold, min_scene_len=max(1, int(round(c.min_shot_s * c.fps))))
        self.starts: list[float] = []  # start second of every frame seen (8 bytes a frame)
        self.end = 0.0
        self.cuts: list = []

    def feed(self, piece: Frames, context: dict) -> None:
        from scenedetect import FrameTimecode

        fps = self.extractor.config.fps
        for rgb, span in zip(piece.images, piece.times):
            self.cuts += self.detector.process_frame(FrameTimecode(len(self.starts), fps), np.ascontiguousarray(rgb[..., ::-1]))
            self.starts.append(float(span[0]))
            self.end = float(span[1])
        return None

    def finish(self) -> FeatureBlock:
        from scenedetect import FrameTimecode

        n = len(self.starts)
        cuts = self.cuts + self.detector.post_process(FrameTimecode(max(n - 1, 0), self.extractor.config.fps))
        edges = [0.0, *(self.starts[cut.frame_num] for cut in cuts if 0 < cut.frame_num < n), self.end]
        spans = np.array([[a, b] for a, b in itertools.pairwise(edges) if b > a]).reshape(-1, 2)
        values = np.stack([np.arange(len(spans)), spans[:, 1] - spans[:, 0]], axis=1)
        return FeatureBlock(values, spans)
