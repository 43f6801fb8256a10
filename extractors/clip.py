"""CLIP image embeddings (open_clip): the visual start of most current video-emotion work.

Frames at 2 fps by default, scaled by the decoder to a short side of 224 px,
then, as open_clip's own transform does: the centre 224 x 224 crop and
OpenAI's CLIP mean and std (the registry entry's ``preprocessing``). Frames go
to the device as uint8 and are cropped and normalised there (``image_ops``).
The network is open_clip's image tower (``model.visual``: ViT-B-32 by default,
``-o clip.model=ViT-B-16`` or ``ViT-L-14``), built offline from open_clip's
model configuration and loaded with the ``visual.*``
tensors of open_clip's published checkpoint (registry ``clip_vit_b_32``, ...).
Each row is the image embedding divided by its norm (``encode_image(...,
normalize=True)``): 512 values for the ViT-B models, 768 for ViT-L-14.

Resizing differs in one point: the decoder scales frames with FFmpeg's
bilinear filter, open_clip with PIL's bicubic. On real frames the two give
the same embedding to a cosine of 0.9997 or more (``tests/test_clip.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, FrameSampled, OptionError, option
from mvfx.extractors.checkpoints import load_checkpoint, load_state_dict_strict, unwrap_state_dict
from mvfx.extractors.image_ops import centre_crop_normalise
from mvfx.extractors.registry import register
from mvfx.extractors.streams import FrameByFrame
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.media.decode import Frames
from mvfx.media.probe import ClipInfo

MODELS = {"ViT-B-32": ("clip_vit_b_32", 512), "ViT-B-16": ("clip_vit_b_16", 512), "ViT-L-14": ("clip_vit_l_14", 768)}
IMAGE_SIZE = 224  # the input of all three


@dataclass(frozen=True)
class ClipConfig(TorchConfig):
    fps: float = option(2.0, above=0)
    model: str = option("ViT-B-32", choices=tuple(MODELS))
    short_side: int = option(IMAGE_SIZE, minimum=1)  # open_clip's transform: the shortest side to the image size

    def validate(self) -> None:
        if self.short_side < IMAGE_SIZE:
            raise OptionError("short_side", self.short_side, f"must be at least the model's image size ({IMAGE_SIZE})")


def visual_state_dict(checkpoint: dict) -> dict:
    """The image tower's tensors of a whole-CLIP state dict (DataParallel's ``module.`` prefix stripped)."""
    keys = {key.removeprefix("module."): key for key in checkpoint}
    return {key.removeprefix("visual."): checkpoint[raw] for key, raw in keys.items() if key.startswith("visual.")}


@register
class Clip(FrameByFrame, FrameSampled, TorchExtractor):
    name = "clip"
    version = "1"
    modality = "video"
    summary = "CLIP (open_clip, ViT-B-32 by default) normalised image embedding per frame at 2 fps"
    config_class = ClipConfig
    libraries = ("torch", "open-clip-torch")
    weight_files = tuple(entry for entry, _ in MODELS.values())
    cpu_batch_size = 16
    mb_per_item = 30.0

    @property
    def weight_names(self) -> tuple[str, ...]:
        return (MODELS[self.config.model][0],)

    @property
    def feature_names(self) -> list[str]:
        return [f"clip_{i:03d}" for i in range(MODELS[self.config.model][1])]

    def build(self):
        from mvfx.extractors.torchvision_compat import import_torchvision

        import_torchvision()  # open_clip imports torchvision: on a CPU-only torch, the shim must come first
        import open_clip

        # The model create_model(name, pretrained=None) builds, without its warning that no weights were loaded.
        return open_clip.CLIP(**open_clip.get_model_config(self.config.model)).visual

    def load_weights(self) -> None:
        checkpoint = unwrap_state_dict(load_checkpoint(self.weights_path(), self.name))
        load_state_dict_strict(self.model, visual_state_dict(checkpoint), self.name)

    def batch_rows(self, frames: np.ndarray) -> np.ndarray:
        import torch

        prep = self.weights_entry.preprocessing
        with self.inference():
            embedding = self.model(centre_crop_normalise(self.to_device(frames), prep["crop"], prep["mean"], prep["std"]))
            return torch.nn.functional.normalize(embedding.float(), dim=-1).cpu().numpy()

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        batches = [self.rows_of(data.images[a : a + self.request_size]) for a in range(0, len(data.images), self.request_size)]
        return FeatureBlock(np.concatenate(batches) if batches else np.zeros((0, self.dim), np.float32), data.times)
