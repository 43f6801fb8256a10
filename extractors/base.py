"""The extractor contract: what each extractor declares as data, and its output block.

An extractor declares its name, version, output dimension and feature
names, the single input it consumes (an ``AudioSpec`` or ``VideoSpec``), its
time grid, and its configuration as a frozen dataclass that validates itself
when it is built (so a bad ``-o`` value fails before any work). ``setup``
runs once per worker; ``extract(data, info, context)`` turns one clip's
decoded input into a FeatureBlock, ``context`` holding the blocks of the
extractors it ``depends_on`` (e.g. ``shots`` for per-shot I3D). The pipeline
feeds clips piece by piece through ``stream(info, context)`` instead, so a
long clip never has to be held whole (``streams.py``); ``extract`` is the
same computation on a whole clip, and the tests hold the two equal.

An extractor is rebuilt from what a store recorded with
``registry.from_description(store.attrs(name))``: its ``config`` round-trips
through ``Config.as_dict`` / ``Config.from_dict``, as lhotse's feature
extractors do.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mvfx.extractors.simulated_device import SimulatedDevice, is_simulated
from mvfx.extractors.torch_device import tensor_device
from mvfx.media.decode import AudioSpec, Frames, VideoSpec
from mvfx.media.probe import ClipInfo
from mvfx.media.rules import KINDS, NONE, Interval, MultipleOf, OneOf, Rule, allowed, refusal

if TYPE_CHECKING:
    from mvfx.extractors.streams import Stream
    from mvfx.extractors.weight_registry import WeightFile


@dataclass
class FeatureBlock:
    """One clip's features: ``values`` [T, D] float32, ``times`` [T, 2] start/end seconds.

    ``detail`` is side data for dependent extractors of the same clip (e.g. every
    face box per frame); it is never stored.
    """

    values: np.ndarray
    times: np.ndarray
    detail: Any = field(default=None, repr=False, compare=False)

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


class OptionError(ValueError):
    """An extractor option with a value it cannot take: ``field``, ``value`` and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str) -> None:
        super().__init__(f"{field_name}={value!r}: {allowed}")
        self.field_name, self.value, self.allowed = field_name, value, allowed


def option(default: Any, *, minimum: float | None = None, above: float | None = None,
           choices: Sequence[Any] | None = None, multiple_of: int | None = None) -> Any:
    """A config field with its allowed values declared as rules (``mvfx.media.rules``, the heads' vocabulary too),
    which ``Config.__post_init__`` checks in turn after the field's type.

    ``minimum``: value >= minimum; ``above``: value > above; ``choices``: one of them;
    ``multiple_of``: an integer multiple. ``None`` is allowed where the type allows it.
    """
    declared = (OneOf(tuple(choices)) if choices else None, None if minimum is None else Interval(low=minimum),
                None if above is None else Interval(low=above, low_open=True), multiple_of and MultipleOf(multiple_of))
    return field(default=default, metadata={"rules": tuple(rule for rule in declared if rule)})


@dataclass(frozen=True)
class Config:
    """Base of every extractor's configuration: typed fields whose values are checked when built."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = _refusal(value, hints[f.name], f.metadata.get("rules", ()))
            if problem:
                raise OptionError(f.name, value, problem)
        self.validate()

    def validate(self) -> None:
        """Checks across fields (override); raise ``OptionError``."""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build from options (CLI strings are converted to each field's type) or a recorded config."""
        return cls(**coerce_overrides(cls, values))


def _base_type(hint: Any) -> tuple[type, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return (args[0] if args else hint), type(None) in typing.get_args(hint)


def _kinds(hint: Any) -> list[Rule]:
    """The rules of a field's type (int, float, bool or str): its kind, and none where the hint is optional."""
    target, optional = _base_type(hint)
    return [KINDS[target], NONE] if optional else [KINDS[target]]


def _refusal(value: Any, hint: Any, rules: Sequence[Rule]) -> str | None:
    """Why ``value`` cannot be the field's (its type first, then each declared rule in turn), or None."""
    problem = refusal(value, _kinds(hint))
    if problem or value is None:
        return problem
    return next((refusal(value, [rule]) for rule in rules if not rule.allows(value)), None)


def coerce_overrides(config_class: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Convert string values (from the CLI) to the config field's type; reject unknown keys."""
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    out = {}
    for key, value in overrides.items():
        if key not in fields:
            raise KeyError(f"unknown option {key!r}; known: {', '.join(sorted(fields))}")
        out[key] = _coerce(key, value, hints[key]) if isinstance(value, str) else value
    return out


def _coerce(name: str, text: str, hint: Any) -> Any:
    target, optional = _base_type(hint)
    lowered = text.strip().lower()
    if lowered in ("none", "null") and optional:
        return None
    if target is bool:
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise OptionError(name, text, f"must be {allowed(_kinds(hint))}")
    try:
        return target(text)
    except ValueError:
        raise OptionError(name, text, f"must be {allowed(_kinds(hint))}") from None


class Extractor(ABC):
    """Base class: subclasses set the class variables and implement the properties + extract."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "audio" or "video"
    summary: ClassVar[str]
    config_class: ClassVar[type[Config]] = Config
    nan_allowed: ClassVar[bool] = False
    libraries: ClassVar[tuple[str, ...]] = ()  # distributions whose versions go into provenance
    # The weight files this configuration loads, the main one first (registry constants, declared beside the network):
    # a tuple, or ``weight_registry.chosen_by(option, table)`` where an option picks them; read on the class, every
    # file some configuration loads (``registry.users_of``).
    weights: tuple[WeightFile, ...] = ()
    storage_dtype: ClassVar[str | None] = None  # e.g. "uint8" for image crops; None: the run's --dtype
    empty_allowed: ClassVar[bool] = False  # True: zero rows is a result (face_crops of a clip without a face)
    thread_safe: ClassVar[bool] = False  # True: clips in flight may use this instance at once (see ``serialised``)

    def __init__(self, **overrides: Any) -> None:
        self.config = self.config_class.from_dict(overrides)
        self.device = "cpu"  # where its tensors live
        self.target_device = "cpu"  # the device as the run named it: cpu, cuda[:N] or a simulated GPU (sim:...)
        self.simulated: SimulatedDevice | None = None  # set on a simulated GPU: its networks only take modelled time
        self.random_weights = False
        self.gpu_workers = 1  # worker processes sharing this extractor's GPU (its batches take their part of its memory)
        self.sharing = False  # clips in flight share it (``share_forward_passes`` was called)
        self._lock = threading.Lock()

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
        """Extractors whose blocks for the same clip this one reads from ``context``."""
        return ()

    @property
    def value_shape(self) -> tuple[int, ...]:
        """Shape of one row before flattening (e.g. (2, 128) for 2-channel spectra)."""
        return (self.dim,)

    # --- running ------------------------------------------------------------
    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        """Load models etc. once per worker; ``random_weights`` builds seeded random networks (tests, dry runs).

        On a simulated GPU no weights are loaded: its passes compute nothing.
        """
        self.target_device, self.device = device, tensor_device(device)
        self.simulated = SimulatedDevice.parse(device) if is_simulated(device) else None
        self.random_weights = (random_weights or self.simulated is not None) and bool(self.weights)

    @abstractmethod
    def extract(self, data: np.ndarray | Frames, info: ClipInfo, context: dict[str, FeatureBlock]) -> FeatureBlock:
        """One clip's features from its decoded input; ``context`` maps ``depends_on`` names to their blocks."""

    def share_forward_passes(self) -> None:
        """Called when several clips are in flight in this process: merge their forward passes where supported."""
        self.sharing = True

    def drain_report(self) -> tuple[list[str], float]:
        """Since the last call: one-line facts for the run summary (a GPU that ran out of memory), and the seconds
        spent in forward passes (``pipeline.timing``); default none."""
        return [], 0.0

    def serialised(self):
        """Context for feeding one clip's stream: exclusive unless the extractor is ``thread_safe``.

        Clips in flight share one instance per process; an extractor that keeps state between calls
        (a library object, a forward hook) is used by one clip at a time.
        """
        return contextlib.nullcontext() if self.thread_safe else self._lock

    # --- streaming (see streams.py) ------------------------------------------
    def stream(self, info: ClipInfo, context: dict[str, FeatureBlock]) -> Stream:
        """How this extractor takes a clip piece by piece (default: all of its input, then ``extract``)."""
        from mvfx.extractors.streams import WholeInput

        return WholeInput(self, info, context)

    @property
    def frames_per_batch(self) -> int:
        """Pieces of frames are cut to a multiple of this, so streamed batches are the whole clip's."""
        return 1

    @property
    def depends_on_whole(self) -> bool:
        """True when the stream needs its dependencies' finished blocks before its first frame (per-shot I3D)."""
        return False

    def frames_held(self, piece: int, info: ClipInfo) -> int:
        """The most frames this extractor keeps at once for ``info`` besides the piece being decoded (memory planning)."""
        return piece

    def weights_provenance(self, random_weights: bool = False, simulated: bool = False) -> dict:
        """``weights``: "none", "random", "simulated" (rows of a simulated GPU, not features) or the main file's
        sha256; ``weights_files``: every file's sha256.

        Raises a one-line MvfxError naming the file and how to get it when one is missing.
        """
        from mvfx.extractors.weights import require

        if not self.weights:
            return {"weights": "none", "weights_files": {}}
        if simulated:
            return {"weights": "simulated", "weights_files": {}}
        if random_weights:
            return {"weights": "random", "weights_files": {}}
        files = {w.name: "sha256:" + require(w)[1] for w in self.weights}
        return {"weights": files[self.weights[0].name], "weights_files": files}

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
            "config": self.config.as_dict(),
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


def single_threaded_blas():
    """Context: numpy's BLAS on one thread, so a matrix product sums in the same order whatever the executor.

    OpenBLAS splits products differently on 1 and 2 threads (measured: log-mel values differ by up to
    5e-5 between an in-process run and a Dask worker). Extractors whose numpy code multiplies matrices
    use this and give bitwise the same features on any executor and worker count.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def fixed_windows(duration: float, window: float, hop: float) -> np.ndarray:
    """[N, 2] spans of complete windows; a clip shorter than one window gets one span over all of it."""
    starts = np.arange(0.0, max(duration - window, 0.0) + 1e-9, hop)
    if duration < window - 1e-9:
        return np.array([[0.0, duration]])
    return np.stack([starts, starts + window], axis=1)
