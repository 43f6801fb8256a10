"""Per-frame ResNet-50 extractors: ImageNet features and Places365 scene probabilities.

Frames are sampled at 2 fps by default (MuVi samples every 0.5 s) and
scaled by the decoder to a short side of 256 px; the extractor takes the
centre 224 x 224 crop and normalises with the ImageNet mean and std — the
standard evaluation transform (Resize(256), CenterCrop(224), Normalize).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from extractors.base import Config, Extractor, FeatureBlock, FrameSampled
from extractors.registry import register
from extractors.torch_device import auto_batch_size, batched_forward, resolve_device
from extractors.weights import load_checkpoint, load_state_dict_strict, require
from pipeline.decode import Frames
from pipeline.probe import ClipInfo

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def centre_crop_normalise(frames: np.ndarray, crop: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 3, crop, crop] float32: centre crop (torchvision's rounding), /255, normalise."""
    h, w = frames.shape[1:3]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    patch = frames[:, top : top + crop, left : left + crop].astype(np.float32) / 255.0
    return ((patch - mean) / std).transpose(0, 3, 1, 2).copy()


def unwrap_state_dict(checkpoint) -> dict:
    """The tensors of a checkpoint saved as a bare state dict or under 'state_dict', 'model_state', 'model' or 'net'."""
    for key in ("state_dict", "model_state", "model", "net"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


@dataclass(frozen=True)
class FrameCnnConfig(Config):
    fps: float = 2.0
    short_side: int = 256
    crop: int = 224
    batch_size: int = 0  # 0: automatic
    precision: str = "auto"


class _ResNet50(FrameSampled, Extractor):
    """torchvision ResNet-50 over sampled frames; subclasses choose the head and the checkpoint."""

    modality = "video"
    config_class = FrameCnnConfig
    libraries = ("torch", "torchvision")
    n_classes = 1000


    def setup(self, device: str = "cpu") -> None:
        import torch

        from extractors.torchvision_compat import import_torchvision

        super().setup(resolve_device(device))
        torchvision = import_torchvision()
        torch.manual_seed(0)
        self.model = torchvision.models.resnet50(weights=None, num_classes=self.n_classes)
        if not self.random_weights:
            path, _ = require(self.weight_names[0])
            state = unwrap_state_dict(load_checkpoint(path, self.name))
            load_state_dict_strict(self.model, state, self.name, rename=lambda k: k.removeprefix("module."))
        self.adapt_head()
        self.model.to(self.device).eval()

    def adapt_head(self) -> None:
        """Change the network's output after the weights are loaded (default: keep the logits)."""

    def output(self, logits):
        return logits

    def extract(self, data: Frames, info: ClipInfo) -> FeatureBlock:
        c = self.config
        pixels = centre_crop_normalise(data.images, c.crop, IMAGENET_MEAN, IMAGENET_STD)
        batch_size = auto_batch_size(c.batch_size, self.device, 16, 60.0)
        values = batched_forward(lambda x: self.output(self.model(x)), pixels, batch_size, self.device, c.precision, self.dim)
        return FeatureBlock(values, data.times)


@register
class ResNet50(_ResNet50):
    name = "resnet50"
    version = "1"
    summary = "ResNet-50 (ImageNet) 2048-d pooled features per frame at 2 fps"
    weight_names = ("resnet50_imagenet",)

    @property
    def feature_names(self) -> list[str]:
        return [f"resnet50_{i:04d}" for i in range(2048)]

    def adapt_head(self) -> None:
        import torch

        self.model.fc = torch.nn.Identity()  # the global-average-pooled 2048-d features


@functools.lru_cache(maxsize=1)
def places365_categories() -> tuple[list[str], np.ndarray]:
    """The 365 category names (without the '/a/' prefix) and an indoor mask, in model output order."""
    lines = [line.split() for line in files("extractors").joinpath("data/places365_io.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    return [name[3:] for name, _ in lines], np.array([io == "1" for _, io in lines])


@register
class Places365(_ResNet50):
    name = "places365"
    version = "1"
    summary = "Places365 ResNet-50: 365 scene probabilities per frame + P(indoor)"
    weight_names = ("places365_resnet50",)
    n_classes = 365

    def setup(self, device: str = "cpu") -> None:
        import torch

        super().setup(device)
        _, indoor = places365_categories()
        self.indoor = torch.as_tensor(indoor, device=self.device)

    @property
    def feature_names(self) -> list[str]:
        return places365_categories()[0] + ["p_indoor"]

    def output(self, logits):
        import torch

        probabilities = torch.softmax(logits.float(), dim=1)
        return torch.cat([probabilities, probabilities[:, self.indoor].sum(dim=1, keepdim=True)], dim=1)
