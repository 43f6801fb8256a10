"""Feature extractors. Importing this package registers every built-in extractor."""
from mvfx.extractors import clip, colour, emobase, faces, flownets, frame_cnn, frames, logmel_phase, musicnn, shots, vggish, video_models, yolo  # noqa: F401
from mvfx.extractors.base import Extractor, FeatureBlock, TimeGrid
from mvfx.extractors.registry import create, from_description, get_class, names, users_of

__all__ = ["Extractor", "FeatureBlock", "TimeGrid", "create", "from_description", "get_class", "names", "users_of"]
