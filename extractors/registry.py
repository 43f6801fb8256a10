"""Registry of extractor classes by name (the torchvision model-registry pattern)."""
from __future__ import annotations

from typing import Any, TypeVar

from mvfx.extractors.base import Extractor, OptionError
from mvfx.media.errors import MvfxError

_REGISTRY: dict[str, type[Extractor]] = {}
E = TypeVar("E", bound=type[Extractor])


def register(cls: E) -> E:
    """Class decorator: make an extractor available by its ``name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"extractor {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Extractor]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MvfxError(f"unknown extractor {name!r}; available: {', '.join(names())}") from None


def create(name: str, **config: Any) -> Extractor:
    """An extractor instance with its configuration (CLI strings are converted); one-line error on a bad option."""
    cls = get_class(name)
    try:
        return cls(**config)
    except OptionError as exc:
        given = config.get(exc.field_name, exc.value)
        raise MvfxError(f"option {name}.{exc.field_name}={given}: {exc.allowed}") from None
    except KeyError as exc:
        raise MvfxError(f"extractor {name}: {exc.args[0]}") from None


def from_description(description: dict) -> Extractor:
    """The extractor that a store's provenance (``store.attrs(name)``) describes, with its recorded config."""
    return create(description["extractor"], **description.get("config", {}))


def users_of(weight_name: str) -> list[str]:
    """Extractors of which some configuration loads the weights-registry entry ``weight_name`` (``mvfx weights list``):
    an extractor class's ``weights`` are every file it may load (``weight_registry.chosen_by``)."""
    return [name for name, cls in sorted(_REGISTRY.items()) if weight_name in {w.name for w in cls.weights}]
