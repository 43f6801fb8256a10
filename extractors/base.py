"""The extractor contract: what each extractor declares as data, and its output block.

An extractor declares its name, version, output dimension and feature
names, the single input it consumes (an ``AudioSpec`` or ``VideoSpec``), its
time grid, and its configuration as a dataclass. ``setup(device)`` runs once
per worker; ``extract`` turns one clip's decoded input into a FeatureBlock.
"""
from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.decode import AudioSpec, Frames, VideoSpec
from pipeline.probe import ClipInfo


@dataclass
class FeatureBlock:
    """One clip's features: ``values`` [T, D] float32, ``times`` [T, 2] start/end seconds."""

    values: np.ndarray
    times: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        self.times = np.ascontiguousarray(self.times, dtype=np.float64)
        if self.values.ndim != 2 or self.times.shape != (len(self.values), 2):
            raise ValueError(f"bad block shapes: values {self.values.shape}, times {self.times.shape}")


@dataclass(frozen=True)
class TimeGrid:
    """How rows map to time: fixed windows, per sampled frame, or one row per clip."""

    kind: str  # "window" | "frame" | "clip"
    window_s: float | None
    hop_s: float | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Config:
    """Base of every extractor's configuration dataclass."""


class Extractor(ABC):
    """Base class: subclasses set the class variables and implement the properties + extract."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "audio" or "video"
    summary: ClassVar[str]
    config_class: ClassVar[type[Config]] = Config
    nan_allowed: ClassVar[bool] = False
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions whose versions go into provenance
    weight_names: ClassVar[tuple[str, ...]] = ()  # entries of extractors.weights.REGISTRY it loads
    storage_dtype: ClassVar[str | None] = None  # e.g. "uint8" for image crops; None: the run's --dtype
    random_weights: bool = False  # set by the runner for --random-weights

    def __init__(self, **overrides: Any) -> None:
        self.config = self.config_class(**coerce_overrides(self.config_class, overrides))
        self.device = "cpu"

    # --- declared as data -------------------------------------------------
    @property
    @abstractmethod
    def input(self) -> AudioSpec | VideoSpec: ...

    @property
    @abstractmethod
    def time_grid(self) -> TimeGrid: ...

    @property
    @abstractmethod
    def feature_names(self) -> list[str]: ...

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Extractors whose rows for the same clip this one reads (passed to ``extract`` as ``context``)."""
        return ()

    @property
    def value_shape(self) -> tuple[int, ...]:
        """Shape of one row before flattening (e.g. (2, 128) for 2-channel spectra)."""
        return (self.dim,)

    # --- running ------------------------------------------------------------
    def setup(self, device: str = "cpu") -> None:
        """Load models etc. once per worker; the base only remembers the device."""
        self.device = device

    @abstractmethod
    def extract(self, data: np.ndarray | Frames, info: ClipInfo) -> FeatureBlock: ...

    def weights_provenance(self) -> dict:
        """``weights``: "none", "random" or the main file's sha256; ``weights_files``: every file's sha256.

        Raises a one-line MvfxError naming the file and how to get it when one is missing.
        """
        from extractors.weights import require

        if not self.weight_names:
            return {"weights": "none", "weights_files": {}}
        if self.random_weights:
            return {"weights": "random", "weights_files": {}}
        files = {name: "sha256:" + require(name)[1] for name in self.weight_names}
        return {"weights": files[self.weight_names[0]], "weights_files": files}

    def describe(self) -> dict:
        """Provenance written to the store's attributes for this extractor."""
        return {
            "extractor": self.name,
            "version": self.version,
            "modality": self.modality,
            "dim": self.dim,
            "value_shape": list(self.value_shape),
            "feature_names": self.feature_names,
            "time_grid": self.time_grid.as_dict(),
            "input": {"kind": type(self.input).__name__, **dataclasses.asdict(self.input)},
            "config": dataclasses.asdict(self.config),
            "nan_allowed": self.nan_allowed,
        }


class FrameSampled:
    """Input and time grid of extractors that take frames at ``config.fps`` scaled to ``config.short_side``.

    Put it before ``Extractor`` in the bases: ``class Colour(FrameSampled, Extractor)``.
    """

    @property
    def input(self) -> VideoSpec:
        return VideoSpec(fps=self.config.fps, short_side=self.config.short_side)

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("frame", 1.0 / self.config.fps, 1.0 / self.config.fps)


def coerce_overrides(config_class: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Convert string values (from the CLI) to the config field's type; reject unknown keys."""
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    out = {}
    for key, value in overrides.items():
        if key not in fields:
            raise KeyError(f"unknown option {key!r}; known: {', '.join(sorted(fields))}")
        out[key] = _coerce(value, hints[key]) if isinstance(value, str) else value
    return out


def _coerce(text: str, hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    if target is bool:
        return text.lower() in ("1", "true", "yes", "on")
    return target(text)


def fixed_windows(duration: float, window: float, hop: float) -> np.ndarray:
    """[N, 2] spans of complete windows; a clip shorter than one window gets one span over all of it."""
    starts = np.arange(0.0, max(duration - window, 0.0) + 1e-9, hop)
    if duration < window - 1e-9:
        return np.array([[0.0, duration]])
    return np.stack([starts, starts + window], axis=1)
