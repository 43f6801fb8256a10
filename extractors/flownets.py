"""FlowNetS optical flow (Dosovitskiy et al. 2015) as a motion descriptor (EmoMV).

Frames are sampled at ``fps`` (4 by default) and scaled to 512 x 384 (any
multiple of 64 works); each row describes the flow between two consecutive
sampled frames, over [t_k, t_k+1]. The network is the published FlowNetS
("simple": the two RGB frames stacked as 6 channels, a 10-layer encoder, a
refinement decoder with skip connections predicting flow at 1/4
resolution), laid out as in ClementPinard/FlowNetPytorch (no batch norm)
so that its Flying Chairs checkpoint loads with strict keys. Inputs are RGB
in [0, 1] minus (0.411, 0.432, 0.45), computed on the device from uint8
frames (``image_ops``); predicted flow is multiplied by div_flow = 20 and
upsampled to the input size. On the CPU the network runs channels-last,
its convolutions on oneDNN (``device_ops``): one pass over 4 pairs at
512 x 384 on 2 cores 0.43 -> 0.32 s; fusing the LeakyReLUs too gained nothing.
The flow then differs from torch's own convolutions' by float summation order
(about 1e-7 of its largest value); the direction histogram, a step function of
each pixel's angle, can move a pixel near a bin edge to the next bin (measured:
at most 1.2e-5 on a histogram value over 119 rows of a 30 s clip).
Row: mean flow magnitude (pixels at the network's input size), an 8-bin
histogram of flow direction weighted by magnitude (sums to 1), and the
encoder's globally averaged deepest features (conv6_1, 1024-d).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, TimeGrid, option
from mvfx.extractors.device_ops import CpuPlan, prepare_network
from mvfx.extractors.image_ops import normalise
from mvfx.extractors.registry import register
from mvfx.extractors.streams import Stream, through_stream
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import Preprocessing, WeightFile, register_weights
from mvfx.media.decode import Frames, VideoSpec
from mvfx.media.errors import ClipError
from mvfx.media.probe import ClipInfo

ANGLE_BINS = 8
DIV_FLOW = 20.0  # the checkpoint's 'div_flow': the network predicts flow divided by 20
FLOWNETS = register_weights(WeightFile(
    name="flownets",
    filename="flownets_EPE1.951.pth.tar",
    url="https://drive.google.com/drive/folders/16eo3p9dO_vmssxRoZCmWkTpNjKRzJzn5",
    sha256=None,
    licence="MIT (ClementPinard/FlowNetPytorch)",
    approx_mb=148,
    source="FlowNetS (Dosovitskiy et al. 2015) trained on Flying Chairs by ClementPinard/FlowNetPytorch "
    "(EPE 1.951, no batch norm); {'state_dict': ..., 'div_flow': 20}; the URL is the release folder",
    preprocessing=Preprocessing(mean=(0.411, 0.432, 0.45)),
))


def build_flownets():
    """The FlowNetS network (torch.nn.Module); forward(x [B, 6, H, W]) -> (flow2 [B, 2, H/4, W/4], conv6_1 features)."""
    import torch
    from torch import nn

    def conv(c_in, c_out, k=3, stride=1):
        return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=True), nn.LeakyReLU(0.1, inplace=True))

    def deconv(c_in, c_out):
        return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.LeakyReLU(0.1, inplace=True))

    def predict_flow(c_in):
        return nn.Conv2d(c_in, 2, 3, 1, 1, bias=False)

    def up_flow():
        return nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False)

    class FlowNetS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.conv3 = conv(6, 64, 7, 2), conv(64, 128, 5, 2), conv(128, 256, 5, 2)
            self.conv3_1, self.conv4, self.conv4_1 = conv(256, 256), conv(256, 512, stride=2), conv(512, 512)
            self.conv5, self.conv5_1 = conv(512, 512, stride=2), conv(512, 512)
            self.conv6, self.conv6_1 = conv(512, 1024, stride=2), conv(1024, 1024)
            self.deconv5, self.deconv4 = deconv(1024, 512), deconv(1026, 256)
            self.deconv3, self.deconv2 = deconv(770, 128), deconv(386, 64)
            self.predict_flow6, self.predict_flow5 = predict_flow(1024), predict_flow(1026)
            self.predict_flow4, self.predict_flow3, self.predict_flow2 = predict_flow(770), predict_flow(386), predict_flow(194)
            self.upsampled_flow6_to_5, self.upsampled_flow5_to_4 = up_flow(), up_flow()
            self.upsampled_flow4_to_3, self.upsampled_flow3_to_2 = up_flow(), up_flow()

        def forward(self, x):
            c2 = self.conv2(self.conv1(x))
            c3 = self.conv3_1(self.conv3(c2))
            c4 = self.conv4_1(self.conv4(c3))
            c5 = self.conv5_1(self.conv5(c4))
            c6 = self.conv6_1(self.conv6(c5))
            flow, features = self.predict_flow6(c6), c6
            for skip, up, dec, pred in (
                (c5, self.upsampled_flow6_to_5, self.deconv5, self.predict_flow5),
                (c4, self.upsampled_flow5_to_4, self.deconv4, self.predict_flow4),
                (c3, self.upsampled_flow4_to_3, self.deconv3, self.predict_flow3),
                (c2, self.upsampled_flow3_to_2, self.deconv2, self.predict_flow2),
            ):
                size = skip.shape[2:]
                merged = torch.cat([skip, dec(features)[..., : size[0], : size[1]], up(flow)[..., : size[0], : size[1]]], dim=1)
                flow, features = pred(merged), merged
            return flow, c6

    return FlowNetS()


def flow_statistics(flow: np.ndarray) -> np.ndarray:
    """[2, H, W] flow -> mean magnitude and the magnitude-weighted 8-bin direction histogram (sums to 1)."""
    dx, dy = flow
    magnitude = np.hypot(dx, dy)
    angle = np.mod(np.arctan2(dy, dx), 2 * np.pi)
    bins = np.minimum((angle / (2 * np.pi) * ANGLE_BINS).astype(np.int64), ANGLE_BINS - 1)
    hist = np.bincount(bins.ravel(), weights=magnitude.ravel(), minlength=ANGLE_BINS)
    total = hist.sum()
    return np.concatenate([[magnitude.mean()], hist / total if total > 0 else hist])


@dataclass(frozen=True)
class FlowNetSConfig(TorchConfig):
    fps: float = option(4.0, above=0)
    width: int = option(512, minimum=64, multiple_of=64)
    height: int = option(384, minimum=64, multiple_of=64)


@register
class FlowNetS(TorchExtractor):
    name = "flownets"
    version = "1"
    modality = "video"
    summary = "FlowNetS optical flow between consecutive frames (4 fps): magnitude, direction histogram, encoder features"
    config_class = FlowNetSConfig
    libraries = ("torch",)
    weights = (FLOWNETS,)
    cpu_batch_size = 4
    mb_per_item = 300.0

    @property
    def input(self) -> VideoSpec:
        return VideoSpec(fps=self.config.fps, size=(self.config.width, self.config.height))

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("window", 1.0 / self.config.fps, 1.0 / self.config.fps)

    @property
    def feature_names(self) -> list[str]:
        sectors = [f"flow_direction_{round(360 * i / ANGLE_BINS):03d}" for i in range(ANGLE_BINS)]
        return ["flow_magnitude_mean", *sectors, *(f"flownets_conv6_{i:04d}" for i in range(1024))]

    def build(self):
        return build_flownets()

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        super().setup(device, random_weights)
        self.memory_format = prepare_network(self.model, self.device, 2, CpuPlan(conv_norms={}))  # no BatchNorm to fold

    def pair_rows(self, frames: np.ndarray) -> np.ndarray:
        """Rows for the consecutive pairs of ``frames`` ([N, H, W, 3] uint8, N - 1 <= batch size): one forward pass."""
        import torch

        with self.inference():
            pixels = normalise(self.to_device(frames), self.weights_entry.preprocessing.mean).permute(0, 3, 1, 2)
            pairs = torch.cat([pixels[:-1], pixels[1:]], dim=1).contiguous(memory_format=self.memory_format)  # [N-1, 6, H, W]
            flow, features = self.model(pairs)
            flow = torch.nn.functional.interpolate(DIV_FLOW * flow.float(), scale_factor=4, mode="bilinear",
                                                   align_corners=False)
            pooled = features.float().mean(dim=(2, 3)).cpu().numpy()
            stats = np.stack([flow_statistics(f) for f in flow.cpu().numpy()])
        return np.concatenate([stats, pooled], axis=1)

    def stream(self, info: ClipInfo, context: dict) -> Stream:
        return FramePairs(self, info, context)

    def frames_held(self, piece: int, info: ClipInfo) -> int:
        return self.request_size + piece

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        return through_stream(self, data, info, context)


class FramePairs(Stream):
    """Consecutive frames in batches of pairs, as they arrive; holds at most a batch of frames plus one."""

    def __init__(self, extractor: FlowNetS, info: ClipInfo, context: dict) -> None:
        super().__init__(extractor, info, context)
        self.images: list[np.ndarray] = []
        self.starts: list[float] = []
        self.rows: list[np.ndarray] = []
        self.times: list[np.ndarray] = []

    def feed(self, piece: Frames, context: dict) -> None:
        self.images += list(piece.images)
        self.starts += [float(t) for t in piece.times[:, 0]]
        batch = self.extractor.request_size
        while len(self.images) > batch:
            self._run(batch)
        self.held = len(self.images)
        return None

    def _run(self, n_pairs: int) -> None:
        self.rows.append(self.extractor.memory(self.extractor.pair_rows, np.stack(self.images[: n_pairs + 1]), overlap=1))
        self.times.append(np.stack([self.starts[:n_pairs], self.starts[1 : n_pairs + 1]], axis=1))
        del self.images[:n_pairs], self.starts[:n_pairs]

    def finish(self) -> FeatureBlock:
        if len(self.images) > 1:
            self._run(len(self.images) - 1)
        if not self.rows:
            raise ClipError("extract", f"{self.info.path}: flownets needs two frames; the clip is shorter than 1/fps")
        return FeatureBlock(np.concatenate(self.rows), np.concatenate(self.times))
