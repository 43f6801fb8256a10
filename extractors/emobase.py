"""openSMILE emobase: 988 named functionals per fixed window, or 26 LLDs per 10 ms.

MuVi uses one emobase functional vector per non-overlapping 0.5 s window, so
that is the default (window and hop configurable). Each window is one
``Smile.process_signal`` call on exactly that slice of the 16 kHz mono
signal, so a value equals what a direct openSMILE call on the window gives.
A clip shorter than one window gets a single row over the whole clip.
Measured: 5.6 ms per window (0.34 s per 30 s of audio) on one core.

The feature names come from files that mvfx ships (``data/emobase_*.txt``),
so listing extractors imports neither opensmile nor pandas; opensmile is
imported in ``setup``, which also checks that its names are still the shipped ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from mvfx.extractors.base import Config, Extractor, FeatureBlock, TimeGrid, fixed_windows, option
from mvfx.extractors.registry import register
from mvfx.extractors.shipped import shipped_lines
from mvfx.media.decode import AudioSpec
from mvfx.media.errors import MvfxError
from mvfx.media.probe import ClipInfo

if TYPE_CHECKING:
    import opensmile

# opensmile.FeatureLevel member -> the shipped file of its feature names, in output order
NAMES_FILES = {"Functionals": "emobase_functionals.txt", "LowLevelDescriptors": "emobase_lld.txt"}


def emobase_smile(feature_level: str) -> opensmile.Smile:
    """openSMILE's emobase at ``feature_level`` (a ``opensmile.FeatureLevel`` member name)."""
    import opensmile

    return opensmile.Smile(feature_set=opensmile.FeatureSet.emobase, feature_level=opensmile.FeatureLevel[feature_level])


def emobase_names(feature_level: str) -> list[str]:
    """emobase's feature names at ``feature_level`` in output order, from the file mvfx ships."""
    return list(shipped_lines(NAMES_FILES[feature_level]))


@dataclass(frozen=True)
class EmobaseConfig(Config):
    window_s: float = option(0.5, minimum=0.05)  # openSMILE's emobase needs a few 10 ms frames per window
    hop_s: float | None = option(None, above=0)  # None: equal to the window (non-overlapping)
    sample_rate: int = option(16000, minimum=8000)


@dataclass(frozen=True)
class EmobaseLldConfig(Config):
    sample_rate: int = option(16000, minimum=8000)


class _OpenSmileExtractor(Extractor):
    """Shared set-up: one ``opensmile.Smile`` per worker for the chosen feature level."""

    modality = "audio"
    libraries = ("opensmile",)
    feature_level: ClassVar[str]  # an opensmile.FeatureLevel member name (a key of NAMES_FILES)

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        super().setup(device, random_weights)
        self.smile = emobase_smile(self.feature_level)
        if list(self.smile.feature_names) != self.feature_names:
            raise MvfxError(f"{self.name}: this opensmile's emobase features differ from the names mvfx ships "
                            f"(extractors/data/{NAMES_FILES[self.feature_level]}); install the opensmile in constraints.txt")

    @property
    def input(self) -> AudioSpec:
        return AudioSpec(self.config.sample_rate)

    @property
    def feature_names(self) -> list[str]:
        return emobase_names(self.feature_level)


@register
class Emobase(_OpenSmileExtractor):
    name = "emobase"
    version = "1"
    summary = "openSMILE emobase: 988 functionals per window (0.5 s, non-overlapping)"
    config_class = EmobaseConfig
    feature_level = "Functionals"

    @property
    def hop(self) -> float:
        return self.config.hop_s or self.config.window_s

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("window", self.config.window_s, self.hop)

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        sr = self.config.sample_rate
        spans = fixed_windows(len(data) / sr, self.config.window_s, self.hop)
        # The openSMILE call that Smile.process_signal wraps, without its per-call pandas index building
        # (5.6 instead of 8.5 ms per 0.5 s window); it returns (starts, ends, values [1, 988]).
        run = self.smile.process.process_func
        rows = [np.asarray(run(data[None, round(s * sr) : round(e * sr)], sr)[2])[0] for s, e in spans]
        return FeatureBlock(np.stack(rows), spans)


@register
class EmobaseLld(_OpenSmileExtractor):
    name = "emobase_lld"
    version = "1"
    summary = "openSMILE emobase low-level descriptors (26 per 10 ms frame, 25 ms window)"
    config_class = EmobaseLldConfig
    feature_level = "LowLevelDescriptors"

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("window", 0.025, 0.010)

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        frame = self.smile.process_signal(data, self.config.sample_rate)
        starts = frame.index.get_level_values("start").total_seconds().to_numpy()
        ends = frame.index.get_level_values("end").total_seconds().to_numpy()
        return FeatureBlock(frame.to_numpy(), np.stack([starts, ends], axis=1))
