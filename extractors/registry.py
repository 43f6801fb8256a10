"""Registry of extractor classes by name (the torchvision model-registry pattern)."""
from __future__ import annotations

from typing import Any, TypeVar

from extractors.base import Extractor
from pipeline.errors import MvfxError

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
    """An extractor instance with its configuration (string values are coerced)."""
    cls = get_class(name)
    try:
        return cls(**config)
    except (KeyError, ValueError, TypeError) as exc:
        raise MvfxError(f"extractor {name}: {exc}") from None
