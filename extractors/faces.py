"""Faces: OpenCV Haar detection, VGG19 facial expression (FER2013 classes), face crops (MVF face stream).

Frames at 2 fps (short side 360 px) are searched with OpenCV's frontal-face
Haar cascade (shipped with opencv-python; the detector the MVF work used),
scale step 1.1, 5 neighbours, faces of at least 30 px. ``face_expression``
and ``face_crops`` depend on ``faces`` (as per-shot I3D depends on
``shots``): the runner runs ``faces`` first and hands its every box per
frame to them in ``context`` (``FeatureBlock.detail``), so a frame is
searched once. When ``faces`` was stored by an earlier run, or sampled
frames differently, they detect again themselves.
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

from mvfx.extractors.base import Config, Extractor, FeatureBlock, FrameSampled, option
from mvfx.extractors.image_ops import grey_crop
from mvfx.extractors.registry import register
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.media.decode import Frames
from mvfx.media.errors import ClipError
from mvfx.media.probe import ClipInfo

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CROP = 48


def haar_cascade() -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
    return cascade


def detect_faces(detector: cv2.CascadeClassifier, images: np.ndarray) -> list[np.ndarray]:
    """Per frame an [F, 4] array of (x, y, w, h) pixel boxes."""
    boxes = []
    for rgb in images:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        boxes.append(np.asarray(found, dtype=np.int64).reshape(-1, 4))
    return boxes


def largest(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]


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
    fps: float = option(2.0, above=0)
    short_side: int = option(360, minimum=32)


class _FaceBoxes(FrameSampled):
    """Face boxes per frame: those ``faces`` found for the same frames (``context``), else detected here."""

    _detector: cv2.CascadeClassifier | None = None

    def face_boxes(self, data: Frames, context: dict) -> list[np.ndarray]:
        found = context.get("faces")
        if found is not None and found.detail is not None and np.array_equal(found.times, data.times):
            return found.detail
        if self._detector is None:
            self._detector = haar_cascade()
        return detect_faces(self._detector, data.images)


@register
class Faces(_FaceBoxes, Extractor):
    name = "faces"
    version = "1"
    modality = "video"
    summary = "OpenCV Haar face detection per frame (2 fps): count, largest face box and area"
    config_class = FacesConfig
    libraries = ("opencv-python",)
    nan_allowed = True

    @property
    def feature_names(self) -> list[str]:
        return ["n_faces", "largest_x", "largest_y", "largest_w", "largest_h", "largest_area"]

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        per_frame = self.face_boxes(data, {})
        rows = []
        for rgb, boxes in zip(data.images, per_frame):
            h, w = rgb.shape[:2]
            if len(boxes) == 0:
                rows.append([0, *[np.nan] * 5])
                continue
            x, y, bw, bh = largest(boxes)
            rows.append([len(boxes), x / w, y / h, bw / w, bh / h, bw * bh / (w * h)])
        return FeatureBlock(np.array(rows, np.float32).reshape(-1, self.dim), data.times, detail=per_frame)


class _DependsOnFaces(_FaceBoxes):
    modality = "video"

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ("faces",)


@dataclass(frozen=True)
class FaceExpressionConfig(FacesConfig, TorchConfig):
    pass


@register
class FaceExpression(_DependsOnFaces, TorchExtractor):
    name = "face_expression"
    version = "1"
    summary = "VGG19 FER2013 expression probabilities per frame (face-area weighted) + face count; NaN without faces"
    config_class = FaceExpressionConfig
    libraries = ("opencv-python", "torch")
    weight_files = ("vgg19_fer2013",)
    nan_allowed = True
    cpu_batch_size = 64
    mb_per_item = 4.0

    @property
    def feature_names(self) -> list[str]:
        return [f"p_{c}" for c in FER_CLASSES] + ["n_faces"]

    def build(self):
        return build_vgg19_fer()

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """[F, 48, 48] uint8 grey faces -> [F, 7] probabilities (centre 44 x 44, grey replicated to 3 channels)."""
        import torch

        prep = self.weights_entry.preprocessing
        margin = (prep["grey_size"] - prep["crop"]) // 2
        centre = crops[:, margin : margin + prep["crop"], margin : margin + prep["crop"]].astype(np.float32) * prep["scale"]
        pixels = np.repeat(centre[:, None], 3, axis=1)
        return self.run_batches(lambda x: torch.softmax(self.model(x).float(), dim=1), pixels, len(FER_CLASSES))

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        per_frame = self.face_boxes(data, context)
        crops = [grey_crop(rgb, box, CROP) for rgb, boxes in zip(data.images, per_frame) for box in boxes]
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
    n_crops: int = option(16, minimum=1)


@register
class FaceCrops(_DependsOnFaces, Extractor):
    name = "face_crops"
    version = "1"
    summary = "up to N 48x48 grey crops of the largest face, spread over the clip (MVF face stream), uint8"
    config_class = FaceCropsConfig
    libraries = ("opencv-python",)
    storage_dtype = "uint8"

    @property
    def feature_names(self) -> list[str]:
        return [f"pixel_{r:02d}_{c:02d}" for r in range(CROP) for c in range(CROP)]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (CROP, CROP)

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        per_frame = self.face_boxes(data, context)
        with_face = [i for i, boxes in enumerate(per_frame) if len(boxes)]
        if not with_face:
            raise ClipError("extract", f"{info.path}: no face found in {len(per_frame)} frames")
        picks = [with_face[int(k)] for k in np.linspace(0, len(with_face) - 1, min(self.config.n_crops, len(with_face)))]
        picks = [picks[k % len(picks)] for k in range(self.config.n_crops)]  # too few: repeat frames with faces
        crops = [grey_crop(data.images[i], largest(per_frame[i]), CROP).reshape(-1) for i in picks]
        return FeatureBlock(np.stack(crops).astype(np.float32), data.times[picks])
