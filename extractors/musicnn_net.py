"""musicnn (Pons & Serra 2019) ported to torch, with its weights read from the TF 1 checkpoint of the musicnn wheel.

The architecture of ``musicnn/models.py`` (``build_musicnn``, 50 tags, mid-end
of 64 filters, back-end of 200 units), for a patch of 187 frames x 96 mel
bands of log-mel:
- input batch norm (one channel);
- front-end: two timbral convolutions over (time, frequency), 7 x 38 and 7 x 67
  (204 filters each, 3 zero frames of padding in time, none in frequency), and
  three temporal ones over time, 128, 64 and 32 frames (51 filters each,
  TensorFlow's "same" padding: the odd frame after), each followed by ReLU,
  batch norm and a max over frequency, concatenated to 561 channels;
- mid-end: three 1-D convolutions of 7 frames (64 filters, ReLU, batch norm),
  the second and third added to their input; the front-end and the three
  outputs concatenated to 753 channels;
- back-end: max and mean over time (interleaved per channel, 1506 values as
  TensorFlow flattens them), batch norm, dense 200 with ReLU, batch norm (the
  "penultimate" embedding), dense 50 (the tag logits; sigmoid gives the taggram).
Batch norms use TensorFlow's epsilon 1e-3; dropout is inactive at inference.

Computed, not transcribed: a batch norm after a ReLU and before a max over
frequency is monotonic per channel, so the max is taken first over the
convolution's responses (or the min, where the norm's scale is negative: those
channels' filters are negated in the forward pass) and the norm applied to the
pooled rows only. The timbral convolutions run with their frequency taps as
input channels (a 7 x 1 convolution over 38 or 67 channels, channels-last),
which oneDNN runs about twice as fast as a one-channel 7 x 38 one. The outputs
equal the original graph's (``tests/test_musicnn_reference.py``).
"""
from __future__ import annotations

import numpy as np

from mvfx.media.errors import MvfxError

N_MELS = 96
BN_EPSILON = 1e-3
TIMBRAL = ((38, 204), (67, 204))  # (frequency width, filters); both 7 frames long
TEMPORAL = ((128, 51), (64, 51), (32, 51))  # (frames, filters)
TIMBRAL_FRAMES = 7
MIDEND_FILTERS = 64
MIDEND_FRAMES = 7
PENULTIMATE = 200
FRONTEND_CHANNELS = sum(f for _, f in TIMBRAL) + sum(f for _, f in TEMPORAL)  # 561
MIDEND_CHANNELS = FRONTEND_CHANNELS + 3 * MIDEND_FILTERS  # 753

# torch module prefix -> TensorFlow layer, in the order musicnn's graph creates its layers.
TF_LAYERS = {
    "input_norm": "batch_normalization",
    "timbral.0.conv": "conv2d", "timbral.0.norm": "batch_normalization_1",
    "timbral.1.conv": "conv2d_1", "timbral.1.norm": "batch_normalization_2",
    "temporal.0.conv": "conv2d_2", "temporal.0.norm": "batch_normalization_3",
    "temporal.1.conv": "conv2d_3", "temporal.1.norm": "batch_normalization_4",
    "temporal.2.conv": "conv2d_4", "temporal.2.norm": "batch_normalization_5",
    "midend.0.conv": "conv2d_5", "midend.0.norm": "batch_normalization_6",
    "midend.1.conv": "conv2d_6", "midend.1.norm": "batch_normalization_7",
    "midend.2.conv": "conv2d_7", "midend.2.norm": "batch_normalization_8",
    "pool_norm": "batch_normalization_9",
    "dense": "dense", "dense_norm": "batch_normalization_10",
    "tags": "dense_1",
}


def build_musicnn(n_tags: int = 50):
    """The network; ``forward([B, T, 96] log-mel) -> (penultimate [B, 200], tag logits [B, n_tags])``."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def norm(channels: int) -> nn.BatchNorm1d:
        return nn.BatchNorm1d(channels, eps=BN_EPSILON)

    def affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference-time batch norm as scale and offset."""
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return scale, bn.bias - bn.running_mean * scale

    class FrequencyPooled(nn.Module):
        """A convolution, ReLU, batch norm and max over frequency: [B, T, F] -> [B, filters, T]."""

        def __init__(self, conv: nn.Module, filters: int) -> None:
            super().__init__()
            self.conv, self.norm = conv, norm(filters)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale, offset = affine(self.norm)
            sign = torch.where(scale < 0, -1.0, 1.0).to(scale.dtype)
            shape = (-1,) + (1,) * (self.conv.weight.dim() - 1)
            peaks = self.peaks(x, self.conv.weight * sign.view(shape), self.conv.bias * sign)  # max of +-responses
            return torch.relu(peaks * sign[:, None]) * scale[:, None] + offset[:, None]

    class Timbral(FrequencyPooled):
        def __init__(self, width: int, filters: int) -> None:
            super().__init__(nn.Conv2d(width, filters, (TIMBRAL_FRAMES, 1)), filters)
            self.width = width

        def peaks(self, x, weight, bias):
            padded = F.pad(x, (0, 0, TIMBRAL_FRAMES // 2, TIMBRAL_FRAMES // 2))
            taps = padded.unfold(2, self.width, 1).contiguous().permute(0, 3, 1, 2)  # [B, width, T+6, F'] channels-last
            responses = F.conv2d(taps, weight, bias)
            return F.max_pool2d(responses, (1, responses.shape[3]))[..., 0]

    class Temporal(FrequencyPooled):
        def __init__(self, frames: int, filters: int) -> None:
            super().__init__(nn.Conv1d(1, filters, frames), filters)
            self.frames = frames

        def peaks(self, x, weight, bias):
            batch, length, bands = x.shape
            padded = F.pad(x, (0, 0, (self.frames - 1) // 2, self.frames // 2))  # TensorFlow's "same"
            series = padded.transpose(1, 2).reshape(batch * bands, 1, -1)
            return F.conv1d(series, weight, bias).view(batch, bands, -1, length).amax(dim=1)

    class Midend(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(channels, MIDEND_FILTERS, MIDEND_FRAMES, padding=MIDEND_FRAMES // 2)
            self.norm = norm(MIDEND_FILTERS)

        def forward(self, x):
            return self.norm(torch.relu(self.conv(x)))

    class Musicnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_norm = norm(1)
            self.timbral = nn.ModuleList(Timbral(w, f) for w, f in TIMBRAL)
            self.temporal = nn.ModuleList(Temporal(n, f) for n, f in TEMPORAL)
            self.midend = nn.ModuleList(Midend(c) for c in (FRONTEND_CHANNELS, MIDEND_FILTERS, MIDEND_FILTERS))
            self.pool_norm = norm(2 * MIDEND_CHANNELS)
            self.dense, self.dense_norm = nn.Linear(2 * MIDEND_CHANNELS, PENULTIMATE), norm(PENULTIMATE)
            self.tags = nn.Linear(PENULTIMATE, n_tags)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scale, offset = affine(self.input_norm)
            x = x * scale + offset
            front = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)  # [B, 561, T]
            mid = [front]
            for k, block in enumerate(self.midend):
                mid.append(block(mid[-1]) + (mid[-1] if k else 0))  # residual from the second on
            features = torch.cat(mid, dim=1)  # [B, 753, T]
            pooled = torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1)  # max, mean per channel
            penultimate = self.dense_norm(torch.relu(self.dense(self.pool_norm(pooled))))
            return penultimate, self.tags(penultimate)

    return Musicnn()


def _torch_layout(module: str, kind: str, value: np.ndarray) -> np.ndarray:
    """A TensorFlow kernel in the layout of the torch module it goes into (biases and norms are as they are)."""
    if kind != "kernel":
        return value
    if module in ("dense", "tags"):
        return value.T  # [in, out] -> [out, in]
    kernel = value[:, :, 0, :].transpose(2, 1, 0)  # [time, width or channels, 1, out] -> [out, width, time]
    return kernel[..., None] if module.startswith("timbral") else kernel  # timbral: frequency taps as channels


def state_dict_from_checkpoint(tensors: dict[str, np.ndarray], source: str) -> dict:
    """The torch state dict of ``build_musicnn()`` from the checkpoint's variables (Adam's slots are left out)."""
    import torch

    names = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
             "moving_mean": "running_mean", "moving_variance": "running_var"}
    state = {}
    for module, layer in TF_LAYERS.items():
        is_norm = layer.startswith("batch_normalization")
        kinds = ("gamma", "beta", "moving_mean", "moving_variance") if is_norm else ("kernel", "bias")
        for kind in kinds:
            key = f"{layer}/{kind}"
            if key not in tensors:
                raise MvfxError(f"{source}: no variable {key}; not a musicnn checkpoint")
            state[f"{module}.{names[kind]}"] = torch.as_tensor(np.ascontiguousarray(_torch_layout(module, kind, tensors[key])))
        if is_norm:
            state[f"{module}.num_batches_tracked"] = torch.tensor(0)
    return state
