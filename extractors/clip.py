"""CLIP image embeddings (open_clip): the visual start of most current video-emotion work.

Frames at 2 fps by default, scaled by the decoder to a short side of 224 px,
then, as open_clip's own transform does: the centre 224 x 224 crop and
OpenAI's CLIP mean and std (``OPEN_CLIP``, the weights' preprocessing). Frames go
to the device as uint8 and are cropped and normalised there (``image_ops``).
The network is open_clip's image tower (``model.visual``: ViT-B-32 by default,
``-o clip.model=ViT-B-16`` or ``ViT-L-14``), built offline from open_clip's
model configuration and loaded with the ``visual.*``
tensors of open_clip's published checkpoint (``clip_vit_b_32``, ... below).
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
from mvfx.extractors.weight_registry import Preprocessing, WeightFile, chosen_by, register_weights
from mvfx.media.decode import Frames
from mvfx.media.probe import ClipInfo

# open_clip's transform for all three models: shortest side to 224 (bicubic), centre crop 224, OpenAI's CLIP mean, std.
OPEN_CLIP = Preprocessing(short_side=224, crop=224, mean=(0.48145466, 0.4578275, 0.40821073),
                          std=(0.26862954, 0.26130258, 0.27577711))


def open_clip_weights(arch: str, filename: str, approx_mb: float, trained_on: str) -> WeightFile:
    """Register open_clip's own release of CLIP ``arch`` trained on LAION: a plain state dict of the whole model, text
    tower included, whose file name ends in its sha256's first 8 hex digits (open_clip checks them, as mvfx does)."""
    return register_weights(WeightFile(
        name="clip_" + arch.lower().replace("-", "_"),
        filename=filename,
        url=f"https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/{filename}",
        sha256=filename.rsplit("-", 1)[1].split(".")[0],
        licence="MIT (mlfoundations/open_clip)",
        approx_mb=approx_mb,
        source=f"open_clip {arch} ({trained_on}); keys visual.* (the image tower mvfx loads) and the text tower's; "
        "`weights import --force` takes another open_clip checkpoint of the same architecture (e.g. a Hugging Face "
        "open_clip_pytorch_model.bin)",
        preprocessing=OPEN_CLIP,
    ))


# -o clip.model=...: its published weights and the size of its embedding
MODELS = {"ViT-B-32": (open_clip_weights("ViT-B-32", "vit_b_32-laion2b_e16-af8dbd0c.pth", 605, "LAION-2B, 16 epochs"), 512),
          "ViT-B-16": (open_clip_weights("ViT-B-16", "vit_b_16-laion400m_e32-55e67d44.pt", 599, "LAION-400M, 32 epochs"), 512),
          "ViT-L-14": (open_clip_weights("ViT-L-14", "vit_l_14-laion400m_e32-3d133497.pt", 1710, "LAION-400M, 32 epochs"), 768)}


@dataclass(frozen=True)
class ClipConfig(TorchConfig):
    fps: float = option(2.0, above=0)
    model: str = option("ViT-B-32", choices=tuple(MODELS))
    short_side: int = option(OPEN_CLIP.short_side, minimum=1)  # open_clip's transform: the shortest side to the image size

    def validate(self) -> None:
        if self.short_side < OPEN_CLIP.crop:
            raise OptionError("short_side", self.short_side, f"must be at least the model's image size ({OPEN_CLIP.crop})")


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
    weights = chosen_by("model", {model: checkpoint for model, (checkpoint, _) in MODELS.items()})
    cpu_batch_size = 16
    mb_per_item = 30.0

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
            embedding = self.model(centre_crop_normalise(self.to_device(frames), prep.crop, prep.mean, prep.std))
            return torch.nn.functional.normalize(embedding.float(), dim=-1).cpu().numpy()

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        batches = [self.rows_of(data.images[a : a + self.request_size]) for a in range(0, len(data.images), self.request_size)]
        return FeatureBlock(np.concatenate(batches) if batches else np.zeros((0, self.dim), np.float32), data.times)
