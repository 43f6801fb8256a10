"""Faces: OpenCV Haar detection, VGG19 facial expression (FER2013 classes), face crops (MVF face stream).

Frames at 2 fps (short side 360 px) are searched with OpenCV's frontal-face
Haar cascade (shipped with opencv-python; the detector the MVF work used),
scale step 1.1, 5 neighbours, faces of at least 30 px. Detection runs once
per decoded frame set: ``faces``, ``face_expression`` and ``face_crops``
share it when they run together.
- ``faces``: per frame the number of faces and the largest face's box
  (x, y, w, h as fractions of the frame) and area fraction; NaN box when
  there is no face (``nan_allowed``).
- ``face_expression``: each face cropped square, grey, 48 x 48, centre
  44 x 44 (the single-crop form of the common FER2013 VGG19 evaluation),
  through VGG19 (FER2013: angry, disgust, fear, happy, sad, surprise,
  neutral); per frame the face-area-weighted mean of the 7 probabilities and
  the face count; a frame without a face is NaN with ``n_faces = 0``.
- ``face_crops``: up to ``n_crops`` 48 x 48 grey crops of the largest face,
  taken from frames spread evenly over the frames that have a face; when
  fewer frames have one, they are repeated (as the MVF paper does). Stored
  as uint8 rows of 2304 values (``value_shape`` [48, 48]).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from extractors.base import Config, Extractor, FeatureBlock, FrameSampled
from extractors.frame_cnn import unwrap_state_dict
from extractors.registry import register
from extractors.torch_device import auto_batch_size, batched_forward, resolve_device
from extractors.weights import load_checkpoint, load_state_dict_strict, require
from pipeline.decode import Frames
from pipeline.errors import ClipError
from pipeline.probe import ClipInfo

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CROP = 48


def haar_cascade() -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
    return cascade


_DETECTOR: cv2.CascadeClassifier | None = None
_LAST: tuple[int, np.ndarray, list] | None = None  # (id of frames, the frames, boxes): one detection per frame set


def detect_faces(images: np.ndarray) -> list[np.ndarray]:
    """Per frame an [F, 4] array of (x, y, w, h) pixel boxes; reused for the same frames object."""
    global _DETECTOR, _LAST
    if _LAST is not None and _LAST[0] == id(images) and _LAST[1] is images:
        return _LAST[2]
    _DETECTOR = _DETECTOR or haar_cascade()
    boxes = []
    for rgb in images:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = _DETECTOR.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        boxes.append(np.asarray(found, dtype=np.int64).reshape(-1, 4))
    _LAST = (id(images), images, boxes)
    return boxes


def grey_crop(rgb: np.ndarray, box: np.ndarray, size: int = CROP) -> np.ndarray:
    """The face box made square around its centre, clipped to the frame, grey, resized to size x size."""
    x, y, w, h = box
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    patch = rgb[y0 : y0 + side, x0 : x0 + side]
    return cv2.resize(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)


def build_vgg19_fer():
    """VGG19 (conv 3x3 + batch norm + ReLU stack) on 44 x 44 faces -> 512 -> dropout -> 7 (FER2013)."""
    import torch
    from torch import nn

    layers, channels = [], 3
    for v in VGG19_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            channels = v
    layers.append(nn.AvgPool2d(1, 1))

    class VGG19Fer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(512, len(FER_CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.features(x).flatten(1)
            return self.classifier(nn.functional.dropout(out, p=0.5, training=self.training))

    return VGG19Fer()


@dataclass(frozen=True)
class FacesConfig(Config):
    fps: float = 2.0
    short_side: int = 360


class _FaceExtractor(FrameSampled, Extractor):
    modality = "video"
    config_class = FacesConfig
    libraries = ("opencv-python",)


@register
class Faces(_FaceExtractor):
    name = "faces"
    version = "1"
    summary = "OpenCV Haar face detection per frame (2 fps): count, largest face box and area"
    nan_allowed = True

    @property
    def feature_names(self) -> list[str]:
        return ["n_faces", "largest_x", "largest_y", "largest_w", "largest_h", "largest_area"]

    def extract(self, data: Frames, info: ClipInfo) -> FeatureBlock:
        rows = []
        for rgb, boxes in zip(data.images, detect_faces(data.images)):
            h, w = rgb.shape[:2]
            if len(boxes) == 0:
                rows.append([0, *[np.nan] * 5])
                continue
            x, y, bw, bh = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
            rows.append([len(boxes), x / w, y / h, bw / w, bh / h, bw * bh / (w * h)])
        return FeatureBlock(np.array(rows, np.float32).reshape(-1, self.dim), data.times)


@dataclass(frozen=True)
class FaceExpressionConfig(FacesConfig):
    batch_size: int = 0
    precision: str = "auto"


@register
class FaceExpression(_FaceExtractor):
    name = "face_expression"
    version = "1"
    summary = "VGG19 FER2013 expression probabilities per frame (face-area weighted) + face count; NaN without faces"
    config_class = FaceExpressionConfig
    libraries = ("opencv-python", "torch")
    weight_names = ("vgg19_fer2013",)
    nan_allowed = True

    @property
    def feature_names(self) -> list[str]:
        return [f"p_{c}" for c in FER_CLASSES] + ["n_faces"]

    def setup(self, device: str = "cpu") -> None:
        import torch

        super().setup(resolve_device(device))
        torch.manual_seed(0)
        self.model = build_vgg19_fer()
        if not self.random_weights:
            path, _ = require("vgg19_fer2013")
            load_state_dict_strict(self.model, unwrap_state_dict(load_checkpoint(path, "VGG19 FER")), "VGG19 FER",
                                   rename=lambda k: k.removeprefix("module."))
        self.model.to(self.device).eval()

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """[F, 48, 48] uint8 grey faces -> [F, 7] probabilities (centre 44 x 44, grey replicated to 3 channels)."""
        import torch

        centre = crops[:, 2:46, 2:46].astype(np.float32) / 255.0
        pixels = np.repeat(centre[:, None], 3, axis=1)
        batch_size = auto_batch_size(self.config.batch_size, self.device, 64, 4.0)
        return batched_forward(lambda x: torch.softmax(self.model(x).float(), dim=1), pixels, batch_size,
                               self.device, self.config.precision, len(FER_CLASSES))

    def extract(self, data: Frames, info: ClipInfo) -> FeatureBlock:
        per_frame = detect_faces(data.images)
        crops = [grey_crop(rgb, box) for rgb, boxes in zip(data.images, per_frame) for box in boxes]
        probs = self.probabilities(np.stack(crops)) if crops else np.zeros((0, len(FER_CLASSES)), np.float32)
        rows, at = [], 0
        for boxes in per_frame:
            if len(boxes) == 0:
                rows.append([*[np.nan] * len(FER_CLASSES), 0])
                continue
            areas = (boxes[:, 2] * boxes[:, 3]).astype(np.float64)
            mean = (probs[at : at + len(boxes)] * areas[:, None]).sum(axis=0) / areas.sum()
            rows.append([*mean, len(boxes)])
            at += len(boxes)
        return FeatureBlock(np.array(rows, np.float32).reshape(-1, self.dim), data.times)


@dataclass(frozen=True)
class FaceCropsConfig(FacesConfig):
    n_crops: int = 16


@register
class FaceCrops(_FaceExtractor):
    name = "face_crops"
    version = "1"
    summary = "up to N 48x48 grey crops of the largest face, spread over the clip (MVF face stream), uint8"
    config_class = FaceCropsConfig
    storage_dtype = "uint8"

    @property
    def feature_names(self) -> list[str]:
        return [f"pixel_{r:02d}_{c:02d}" for r in range(CROP) for c in range(CROP)]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (CROP, CROP)

    def extract(self, data: Frames, info: ClipInfo) -> FeatureBlock:
        per_frame = detect_faces(data.images)
        with_face = [i for i, boxes in enumerate(per_frame) if len(boxes)]
        if not with_face:
            raise ClipError("extract", f"{info.path}: no face found in {len(per_frame)} frames")
        picks = [with_face[int(k)] for k in np.linspace(0, len(with_face) - 1, min(self.config.n_crops, len(with_face)))]
        picks = [picks[k % len(picks)] for k in range(self.config.n_crops)]  # too few: repeat frames with faces
        crops = []
        for i in picks:
            boxes = per_frame[i]
            crops.append(grey_crop(data.images[i], boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]).reshape(-1))
        return FeatureBlock(np.stack(crops).astype(np.float32), data.times[picks])
