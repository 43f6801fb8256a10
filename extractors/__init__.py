"""Feature extractors. Importing this package registers every built-in extractor."""
from extractors import colour, emobase, logmel_phase, vggish  # noqa: F401  (registration)
from extractors.base import Extractor, FeatureBlock, TimeGrid
from extractors.registry import create, get_class, names

__all__ = ["Extractor", "FeatureBlock", "TimeGrid", "create", "get_class", "names"]
