"""Feature extractors. Importing this package registers every built-in extractor."""
from extractors import colour, emobase, faces, flownets, frame_cnn, logmel_phase, shots, video_models, vggish, yolo  # noqa: F401
from extractors.base import Extractor, FeatureBlock, TimeGrid
from extractors.registry import create, get_class, names

__all__ = ["Extractor", "FeatureBlock", "TimeGrid", "create", "get_class", "names"]
