"""Per-frame ResNet-50 extractors: ImageNet features and Places365 scene probabilities.

Frames are sampled at 2 fps by default (MuVi samples every 0.5 s) and
scaled by the decoder to a short side of 256 px; the extractor takes the
centre 224 x 224 crop and normalises with the mean and std its weights were
trained with (``IMAGENET``, both checkpoints' preprocessing: torchvision's
Resize(256), CenterCrop(224), Normalize; the config's defaults come from it). Frames go to
the device as uint8 and are cropped and normalised there (``image_ops``);
on the CPU the network runs with its BatchNorms folded, every convolution on
oneDNN with its ReLU and residual sum in the same pass, and channels-last
memory (``device_ops``; 16 frames on 2 cores: 0.73 s as built -> 0.35 s).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, FrameSampled, OptionError, option
from mvfx.extractors.device_ops import CpuPlan, prepare_network
from mvfx.extractors.image_ops import centre_crop_normalise
from mvfx.extractors.registry import register
from mvfx.extractors.streams import FrameByFrame
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import Preprocessing, WeightFile, register_weights
from mvfx.media.decode import Frames
from mvfx.media.probe import ClipInfo

# torchvision's evaluation transform for ImageNet-trained ResNets: Resize(256), CenterCrop(224), Normalize.
IMAGENET = Preprocessing(short_side=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
RESNET50_IMAGENET = register_weights(WeightFile(
    name="resnet50_imagenet",
    filename="resnet50-0676ba61.pth",
    url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    sha256="0676ba61",
    licence="BSD-3-Clause (torchvision)",
    approx_mb=98,
    source="torchvision ResNet50_Weights.IMAGENET1K_V1 (ImageNet-1k, top-1 76.13); keys match torchvision.models.resnet50",
    preprocessing=IMAGENET,
))
PLACES365_RESNET50 = register_weights(WeightFile(
    name="places365_resnet50",
    filename="resnet50_places365.pth.tar",
    url="http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar",
    sha256=None,
    licence="MIT (CSAILVision/places365)",
    approx_mb=97,
    source="CSAILVision Places365-CNN ResNet-50; a {'state_dict': ...} checkpoint saved under DataParallel: "
    "the 'module.' prefix is stripped and the keys map 1:1 onto torchvision's resnet50 with a 365-way fc",
    preprocessing=IMAGENET,
    categories="places365_io.txt",
    category_columns=2,
))


@dataclass(frozen=True)
class FrameCnnConfig(TorchConfig):
    fps: float = option(2.0, above=0)
    short_side: int = option(IMAGENET.short_side, minimum=1)
    crop: int = option(IMAGENET.crop, minimum=1)

    def validate(self) -> None:
        if self.crop > self.short_side:
            raise OptionError("crop", self.crop, f"must be at most short_side ({self.short_side})")


def torchvision_plan() -> CpuPlan:
    """What the CPU fuses in torchvision's ResNet: convolution -> BatchNorm pairs (downsample Sequentials are found by
    ``fold_batch_norms``), the stem's ReLU, and each bottleneck's ReLUs and residual sum (its own forward)."""
    from mvfx.extractors.torchvision_compat import import_torchvision

    resnet = import_torchvision().models.resnet
    return CpuPlan(
        conv_norms={resnet.ResNet: (("conv1", "bn1"),), resnet.Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))},
        conv_relus={resnet.ResNet: (("conv1", "bn1", "relu"),)},
        rewires={resnet.Bottleneck: _fuse_bottleneck})


def _fuse_bottleneck(block) -> None:
    """A torchvision Bottleneck with its BatchNorms folded and ``CpuConv``s gets ``_bottleneck_forward``, its first two
    convolutions applying the ReLU that follows them (the block's one ReLU module serves three places, so it stays)."""
    import torch

    from mvfx.extractors.device_ops import CpuConv

    downsample = block.downsample
    if (all(type(norm) is torch.nn.Identity for norm in (block.bn1, block.bn2, block.bn3)) and type(block.relu) is torch.nn.ReLU
            and all(isinstance(conv, CpuConv) for conv in (block.conv1, block.conv2, block.conv3))
            and (downsample is None or (type(downsample) is torch.nn.Sequential and len(downsample) == 2
                                        and isinstance(downsample[0], CpuConv) and type(downsample[1]) is torch.nn.Identity))):
        block.conv1.relu = block.conv2.relu = True
        block.forward = _bottleneck_forward.__get__(block)


def _bottleneck_forward(block, x):
    """torchvision's Bottleneck.forward, the first two ReLUs in their convolutions and conv3 adding the shortcut and
    applying the last ReLU (into the shortcut: the block's input, or the downsample's output)."""
    shortcut = x if block.downsample is None else block.downsample(x)
    return block.conv3.add_relu_(block.conv2(block.conv1(x)), shortcut)


class _ResNet50(FrameByFrame, FrameSampled, TorchExtractor):
    """torchvision ResNet-50 over sampled frames; subclasses choose the head and the checkpoint."""

    modality = "video"
    config_class = FrameCnnConfig
    libraries = ("torch", "torchvision")
    n_classes = 1000
    cpu_batch_size = 16
    mb_per_item = 60.0

    def build(self):
        from mvfx.extractors.torchvision_compat import import_torchvision

        return import_torchvision().models.resnet50(weights=None, num_classes=self.n_classes)

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        super().setup(device, random_weights)
        self.memory_format = prepare_network(self.model, self.device, 2, torchvision_plan())

    def output(self, logits):
        return logits

    def pixels(self, frames):
        """[N, H, W, 3] uint8 on the device -> the network's [N, 3, crop, crop] input, in its memory format."""
        prep = self.weights_entry.preprocessing
        pixels = centre_crop_normalise(frames, self.config.crop, prep.mean, prep.std)
        return pixels.contiguous(memory_format=self.memory_format)

    def batch_rows(self, frames: np.ndarray) -> np.ndarray:
        with self.inference():
            return self.output(self.model(self.pixels(self.to_device(frames)))).float().cpu().numpy()

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        batches = [self.rows_of(data.images[a : a + self.request_size]) for a in range(0, len(data.images), self.request_size)]
        return FeatureBlock(np.concatenate(batches) if batches else np.zeros((0, self.dim), np.float32), data.times)


@register
class ResNet50(_ResNet50):
    name = "resnet50"
    version = "1"
    summary = "ResNet-50 (ImageNet) 2048-d pooled features per frame at 2 fps"
    weights = (RESNET50_IMAGENET,)

    @property
    def feature_names(self) -> list[str]:
        return [f"resnet50_{i:04d}" for i in range(2048)]

    def adapt(self) -> None:
        import torch

        self.model.fc = torch.nn.Identity()  # the global-average-pooled 2048-d features


@functools.lru_cache(maxsize=1)
def places365_categories() -> tuple[list[str], np.ndarray]:
    """The 365 category names (without the '/a/' prefix) and an indoor mask, in model output order."""
    rows = [line.split() for line in PLACES365_RESNET50.category_lines()]
    return [name[3:] for name, _ in rows], np.array([io == "1" for _, io in rows])


@register
class Places365(_ResNet50):
    name = "places365"
    version = "1"
    summary = "Places365 ResNet-50: 365 scene probabilities per frame + P(indoor)"
    weights = (PLACES365_RESNET50,)
    n_classes = 365

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        import torch

        super().setup(device, random_weights)
        self.indoor = torch.as_tensor(places365_categories()[1], device=self.device)

    @property
    def feature_names(self) -> list[str]:
        return [*places365_categories()[0], "p_indoor"]

    def output(self, logits):
        import torch

        probabilities = torch.softmax(logits.float(), dim=1)
        return torch.cat([probabilities, probabilities[:, self.indoor].sum(dim=1, keepdim=True)], dim=1)
