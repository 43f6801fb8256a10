"""YOLOv5 (Ultralytics, COCO 80 classes) object histograms per frame.

Frames at 2 fps are letterboxed to 640 px (aspect kept, grey 114 padding,
as Ultralytics does), run through YOLOv5{n,s,m}u built from Ultralytics'
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

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from extractors.base import Config, Extractor, FeatureBlock, FrameSampled
from extractors.registry import register
from extractors.torch_device import auto_batch_size, autocast, resolve_device
from extractors.weights import (
    converted_path,
    load_checkpoint,
    load_state_dict_strict,
    mvfx_home,
    require,
)
from pipeline.decode import Frames
from pipeline.errors import MvfxError
from pipeline.probe import ClipInfo


def offline_ultralytics():
    """Import ultralytics with every online feature off and its settings in a writable folder.

    Importing ultralytics also rewrites process-wide display settings (NumPy's
    float format, pandas' column limit); they are put back as they were.
    """
    import pandas as pd

    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(mvfx_home() / "ultralytics"))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from extractors.torchvision_compat import import_torchvision

    import_torchvision()
    numpy_options, pandas_columns = np.get_printoptions(), pd.get_option("display.max_columns")
    import ultralytics

    np.set_printoptions(**numpy_options)
    pd.set_option("display.max_columns", pandas_columns)
    return ultralytics


@functools.lru_cache(maxsize=1)
def coco_names() -> list[str]:
    offline_ultralytics()
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    return [names[i] for i in range(80)]


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the long side is ``size`` and pad to size x size with grey 114, centred (Ultralytics' LetterBox)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    out = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out


@dataclass(frozen=True)
class YoloConfig(Config):
    size: str = "n"  # n, s or m
    fps: float = 2.0
    short_side: int = 360
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.45
    batch_size: int = 0
    precision: str = "auto"


@register
class Yolov5(FrameSampled, Extractor):
    name = "yolov5"
    version = "1"
    modality = "video"
    summary = "YOLOv5 (COCO): per class, detections above the confidence threshold and their highest confidence"
    config_class = YoloConfig
    libraries = ("torch", "ultralytics")

    @property
    def weight_names(self) -> tuple[str, ...]:
        if self.config.size not in ("n", "s", "m"):
            raise ValueError(f"yolov5 size must be n, s or m, not {self.config.size!r}")
        return (f"yolov5{self.config.size}u",)


    @property
    def feature_names(self) -> list[str]:
        return [f"{name}_{stat}" for name in coco_names() for stat in ("count", "max_conf")]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (80, 2)

    def setup(self, device: str = "cpu") -> None:
        import torch

        offline_ultralytics()
        from ultralytics.nn.tasks import DetectionModel

        super().setup(resolve_device(device))
        torch.manual_seed(0)
        self.model = DetectionModel(f"yolov5{self.config.size}u.yaml", nc=80, verbose=False)
        if not self.random_weights:
            require(self.weight_names[0])
            state = converted_path(self.weight_names[0])
            if not state.is_file():
                raise MvfxError(f"{state} is missing: run `mvfx weights import {self.weight_names[0]} FILE` again to convert it")
            load_state_dict_strict(self.model, load_checkpoint(state, "YOLOv5"), "YOLOv5")
        self.model.to(self.device).eval()

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """Per frame an [n, 6] array (x1, y1, x2, y2, confidence, class) in letterboxed pixels."""
        import torch
        from ultralytics.utils.nms import non_max_suppression

        c = self.config
        batch_size = auto_batch_size(c.batch_size, self.device, 8, 80.0)
        out = []
        with torch.inference_mode(), autocast(self.device, c.precision):
            for start in range(0, len(frames), batch_size):
                batch = np.stack([letterbox(f, c.imgsz) for f in frames[start : start + batch_size]])
                x = torch.as_tensor(batch).permute(0, 3, 1, 2).float().div(255).to(self.device)
                prediction = self.model(x)
                prediction = prediction[0] if isinstance(prediction, (list, tuple)) else prediction
                kept = non_max_suppression(prediction.float(), conf_thres=c.conf, iou_thres=c.iou, max_det=300)
                out += [k.float().cpu().numpy() for k in kept]
        return out

    def histogram(self, detections: np.ndarray) -> np.ndarray:
        """[80, 2]: per class the count and the highest confidence."""
        row = np.zeros((80, 2), np.float32)
        for *_, confidence, cls in detections:
            k = int(cls)
            row[k, 0] += 1
            row[k, 1] = max(row[k, 1], confidence)
        return row

    def extract(self, data: Frames, info: ClipInfo) -> FeatureBlock:
        rows = [self.histogram(d).reshape(-1) for d in self.detect(data.images)]
        values = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return FeatureBlock(values, data.times)
