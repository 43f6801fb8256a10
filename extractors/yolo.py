"""YOLOv5 (Ultralytics, COCO 80 classes) object histograms per frame.

Frames at 2 fps are letterboxed to 640 px (aspect kept, grey 114 padding,
as Ultralytics does; the letterboxed frames go to the device as uint8 and
are scaled to [0, 1] there), run through YOLOv5{n,s,m}u built from Ultralytics'
bundled model yaml, and post-processed by Ultralytics' non-maximum
suppression (confidence 0.25, IoU 0.45). Each row holds, per COCO class,
the number of detections and the highest confidence (0 when none): an
80 x 2 block (``value_shape`` [80, 2]).

Nothing is downloaded at run time: the weights come from the mvfx registry
(converted once to a plain state dict), and Ultralytics runs with
``YOLO_OFFLINE=1`` (no update, hub or telemetry check, no DNS look-up) and a
settings folder under ``$MVFX_HOME/ultralytics``; mvfx never calls its
plotting (the only code that fetches fonts).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, FrameSampled, option
from mvfx.extractors.registry import register
from mvfx.extractors.shipped import shipped_lines
from mvfx.extractors.streams import FrameByFrame
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import WeightFile, chosen_by, register_weights
from mvfx.extractors.weights import converted_path, mvfx_home, require
from mvfx.media.decode import Frames
from mvfx.media.errors import MvfxError
from mvfx.media.probe import ClipInfo


def yolov5_weights(size: str, approx_mb: float) -> WeightFile:
    """Register Ultralytics' release of YOLOv5 ``size`` with the anchor-free head ("u"), trained on COCO."""
    return register_weights(WeightFile(
        name=f"yolov5{size}u",
        filename=f"yolov5{size}u.pt",
        url=f"https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov5{size}u.pt",
        sha256=None,
        licence="AGPL-3.0 (Ultralytics)",
        approx_mb=approx_mb,
        source=f"Ultralytics YOLOv5{size}u (COCO, 80 classes; anchor-free head). The release file is a pickled "
        "model: `mvfx weights import/fetch` unpickles it once, on your command, and keeps a plain state dict "
        "that extraction loads with weights_only=True",
        convert="ultralytics",
    ))


SIZES = {"n": yolov5_weights("n", 5.3), "s": yolov5_weights("s", 18), "m": yolov5_weights("m", 50)}  # -o yolov5.size=...


def offline_ultralytics():
    """Import ultralytics with every online feature off and its settings in a writable folder.

    Importing ultralytics also rewrites process-wide display settings (NumPy's
    float format, pandas' column limit); they are put back as they were.
    """
    import pandas as pd

    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(mvfx_home() / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from mvfx.extractors.torchvision_compat import import_torchvision

    import_torchvision()
    numpy_options, pandas_columns = np.get_printoptions(), pd.get_option("display.max_columns")
    import ultralytics

    np.set_printoptions(**numpy_options)
    pd.set_option("display.max_columns", pandas_columns)
    return ultralytics


def coco_names() -> list[str]:
    """The 80 class names in output order, from the file mvfx ships (checked against Ultralytics' in the tests)."""
    return list(shipped_lines("coco80.txt"))


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the long side is ``size`` and pad to size x size with grey 114, centred (Ultralytics' LetterBox)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    out = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


@dataclass(frozen=True)
class YoloConfig(TorchConfig):
    size: str = option("n", choices=tuple(SIZES))
    fps: float = option(2.0, above=0)
    short_side: int = option(360, minimum=32)
    imgsz: int = option(640, minimum=32, multiple_of=32)  # the network's stride
    conf: float = option(0.25, minimum=0)
    iou: float = option(0.45, minimum=0)


@register
class Yolov5(FrameByFrame, FrameSampled, TorchExtractor):
    name = "yolov5"
    version = "1"
    modality = "video"
    summary = "YOLOv5 (COCO): per class, detections above the confidence threshold and their highest confidence"
    config_class = YoloConfig
    libraries = ("torch", "ultralytics")
    weights = chosen_by("size", SIZES)
    cpu_batch_size = 8
    mb_per_item = 80.0

    @property
    def feature_names(self) -> list[str]:
        return [f"{name}_{stat}" for name in coco_names() for stat in ("count", "max_conf")]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (80, 2)

    def build(self):
        offline_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        return DetectionModel(f"yolov5{self.config.size}u.yaml", nc=80, verbose=False)

    def weights_path(self):
        """The plain state dict that `mvfx weights import/fetch` converted from the pickled release file."""
        require(self.weights_entry)
        state = converted_path(self.weights_entry)
        if not state.is_file():
            raise MvfxError(f"{state} is missing: run `mvfx weights import {self.weights_entry.name} FILE` again to convert it")
        return state

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """Per frame an [n, 6] array (x1, y1, x2, y2, confidence, class) in letterboxed pixels."""
        from ultralytics.utils.nms import non_max_suppression

        c = self.config

        def detections(batch: np.ndarray) -> list[np.ndarray]:
            x = self.to_device(batch).permute(0, 3, 1, 2).float().div(255)
            prediction = self.model(x)
            prediction = prediction[0] if isinstance(prediction, (list, tuple)) else prediction
            kept = non_max_suppression(prediction.float(), conf_thres=c.conf, iou_thres=c.iou, max_det=300)
            return [k.float().cpu().numpy() for k in kept]

        out = []
        with self.inference():
            for start in range(0, len(frames), self.request_size):
                out += self.memory(detections, np.stack([letterbox(f, c.imgsz) for f in frames[start : start + self.request_size]]))
        return out

    def histogram(self, detections: np.ndarray) -> np.ndarray:
        """[80, 2]: per class the count and the highest confidence."""
        row = np.zeros((80, 2), np.float32)
        for *_, confidence, cls in detections:
            k = int(cls)
            row[k, 0] += 1
            row[k, 1] = max(row[k, 1], confidence)
        return row

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        rows = [self.histogram(d).reshape(-1) for d in self.detect(data.images)]
        values = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return FeatureBlock(values, data.times)
