"""Clip-level action features: SlowFast R50 8x8 and I3D R50 (Kinetics-400, pytorchvideo).

Frames are decoded at 30 fps with a short side of 256 px. A window of 64
frames (2.13 s; stride configurable, non-overlapping by default) is sampled
the way pytorchvideo evaluates these models (UniformTemporalSubsample:
``linspace(0, 63, n)`` truncated to integers), and only the frames a window
picks are converted to RGB (``WindowReads``; the others reach the stream
black, never a network):
- SlowFast: 32 frames for the fast pathway, and ``linspace(0, 31, 8)`` of
  those for the slow pathway (alpha 4); centre crop 256;
- I3D R50: 8 frames; centre crop 224;
both scaled to [0, 1] and normalised with mean 0.45, std 0.225 (the weights'
``preprocessing``; the short side's default comes from it). A batch's
picked frames go to the device once, as uint8, and are cropped and normalised
there (``image_ops``; SlowFast's slow frames are indexed from the fast ones on
the device); on the CPU the networks run with their BatchNorms folded, every
convolution on oneDNN with its ReLU and residual sum in the same pass, and
channels-last-3d memory (``device_ops``; one window on 2 cores: SlowFast
0.89 s as built -> 0.38 s, I3D 0.36 -> 0.15 s). Features are
the head's input (the pooled 2304-d SlowFast vector: 2048 slow + 256 fast;
the pooled 2048-d I3D vector); the ``*_logits`` variants store the 400
Kinetics class probabilities instead. ``per_shot=true`` gives one row per
shot from the ``shots`` extractor, the frames spread over the shot (MuVi's
action features per scene).

Streaming: a window's frames are held only until the window is full (64
frames at 256 x 455 are 22 MB); per shot, only the 8 (I3D) or 32 (SlowFast)
frames each shot's row uses are kept, because the shots are known before the
frames arrive (see ``depends_on_whole``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mvfx.extractors.base import FeatureBlock, OptionError, TimeGrid, option
from mvfx.extractors.device_ops import CpuPlan, prepare_network
from mvfx.extractors.image_ops import centre_crop_normalise
from mvfx.extractors.registry import register
from mvfx.extractors.streams import PickedFrames, Stream, Windows
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import Preprocessing, WeightFile, register_weights
from mvfx.media.decode import Frames, VideoSpec, WindowReads, target_times
from mvfx.media.errors import ClipError
from mvfx.media.probe import ClipInfo


def uniform_subsample(n_available: int, n: int) -> np.ndarray:
    """pytorchvideo's UniformTemporalSubsample indices: linspace(0, T-1, n) truncated."""
    return np.linspace(0, n_available - 1, n).astype(np.int64)


def slowfast_indices(window: int = 64, fast: int = 32, alpha: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets within a window for the fast and the slow pathway."""
    fast_idx = uniform_subsample(window, fast)
    return fast_idx, fast_idx[uniform_subsample(fast, fast // alpha)]


# pytorchvideo's Kinetics evaluation: short side 256, frames in [0, 1], mean 0.45, std 0.225; each model its own crop.
KINETICS = Preprocessing(short_side=256, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))


def kinetics_weights(builder: str, filename: str, approx_mb: float, about: str, crop: int) -> WeightFile:
    """Register the pytorchvideo model zoo's Kinetics-400 checkpoint of ``pytorchvideo.models.hub.<builder>``."""
    return register_weights(WeightFile(
        name=f"{builder}_k400",
        filename=filename,
        url=f"https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/{filename}",
        sha256=None,
        licence="Apache-2.0 (pytorchvideo model zoo)",
        approx_mb=approx_mb,
        source=f"pytorchvideo model zoo {about}; {{'model_state': ...}} for pytorchvideo.models.hub.{builder}",
        preprocessing=replace(KINETICS, crop=crop),
        categories="kinetics400_classes.txt",
    ))


SLOWFAST_R50_K400 = kinetics_weights("slowfast_r50", "SLOWFAST_8x8_R50.pyth", 265, "SlowFast R50 8x8, Kinetics-400 (top-1 76.9)", crop=256)
I3D_R50_K400 = kinetics_weights("i3d_r50", "I3D_8x8_R50.pyth", 215,
                                "I3D R50 8x8 (ResNet-50 inflated, 2048-d), Kinetics-400 (top-1 73.3)", crop=224)


@dataclass(frozen=True)
class VideoModelConfig(TorchConfig):
    fps: float = option(30.0, above=0)
    window_frames: int = option(64, minimum=1)
    stride_frames: int = option(64, minimum=1)
    short_side: int = option(KINETICS.short_side, minimum=1)
    per_shot: bool = False
    # batch_size (inherited) counts windows per forward pass


def pytorchvideo_plan() -> CpuPlan:
    """What the CPU fuses in pytorchvideo's ResNet-style networks (SlowFast, I3D): convolution -> BatchNorm pairs,
    the ReLUs after the stem's, the bottlenecks' first two and the fast-to-slow convolutions, and each residual block's
    ReLU(branch2(x) + shortcut) done by branch2's last convolution."""
    from pytorchvideo.models.resnet import BottleneckBlock, ResBlock
    from pytorchvideo.models.slowfast import FuseFastToSlow
    from pytorchvideo.models.stem import ResNetBasicStem

    return CpuPlan(
        conv_norms={ResNetBasicStem: (("conv", "norm"),), ResBlock: (("branch1_conv", "branch1_norm"),),
                    BottleneckBlock: (("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c")),
                    FuseFastToSlow: (("conv_fast_to_slow", "norm"),)},
        conv_relus={ResNetBasicStem: (("conv", "norm", "activation"),),
                    BottleneckBlock: (("conv_a", "norm_a", "act_a"), ("conv_b", "norm_b", "act_b")),
                    FuseFastToSlow: (("conv_fast_to_slow", "norm", "activation"),)},
        rewires={ResBlock: _fuse_res_block})


def _fuse_res_block(block) -> None:
    """A ResBlock computing ReLU(shortcut + branch2(x)) with BatchNorms folded and a ``CpuConv`` last in branch2 gets
    ``_res_block_forward``; any other is left as it is."""
    import torch
    from pytorchvideo.models.resnet import BottleneckBlock, _trivial_sum

    from mvfx.extractors.device_ops import CpuConv

    branch = block.branch2
    folded = all(type(norm) is torch.nn.Identity or norm is None for norm in (block.branch1_norm, branch.norm_c))
    if (block.branch_fusion is _trivial_sum and type(block.activation) is torch.nn.ReLU and type(branch) is BottleneckBlock
            and folded and isinstance(branch.conv_c, CpuConv)):
        block.forward = _res_block_forward.__get__(block)


def _res_block_forward(block, x):
    """pytorchvideo's ResBlock.forward, branch2's last convolution adding the shortcut and applying the ReLU (into the
    shortcut: the block's input, or branch1's output)."""
    shortcut = x if block.branch1_conv is None else block.branch1_conv(x)
    b = block.branch2
    for conv, norm, act in ((b.conv_a, b.norm_a, b.act_a), (b.conv_b, b.norm_b, b.act_b)):
        x = conv(x)
        x = x if norm is None else norm(x)
        x = x if act is None else act(x)
    return b.conv_c.add_relu_(x, shortcut)


def head_input_network(model, logits: bool):
    """pytorchvideo's ``model`` returning, from one pass, its head's pooled input ([B, C] features) or its class
    logits ([B, 400]). Nothing is kept on the module between calls, so clips in flight may call it at once (a forward
    hook that stored the pooled input on the extractor let two clips read each other's rows)."""
    import torch

    class HeadInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x):
            blocks = self.net.blocks
            for block in blocks[:-1]:
                x = block(x)
            head = blocks[-1]  # pytorchvideo's ResNetBasicHead.forward, in eval mode (its dropout is the identity)
            if head.pool is not None:
                x = head.pool(x)
            x = x.permute((0, 2, 3, 4, 1))  # [B, T, H, W, C]: what the head's projection takes
            if not logits:
                return x.mean(dim=(1, 2, 3))
            x = head.proj(x).permute((0, 4, 1, 2, 3))
            if head.activation is not None:
                x = head.activation(x)
            return head.output_pool(x).view(x.shape[0], -1)

    return HeadInput()


class _KineticsVideoModel(TorchExtractor):
    modality = "video"
    config_class = VideoModelConfig
    libraries = ("torch", "torchvision", "pytorchvideo")
    feature_dim: int
    logits = False
    cpu_batch_size = 1
    gpu_batch_cap = 32  # windows: an H200 is busy at 32 SlowFast windows, and each batch holds 32 x 64 frames on the host

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        if self.config.short_side < self.crop:
            raise OptionError("short_side", self.config.short_side,
                              f"must be at least {self.name}'s centre crop ({self.crop} px, from its weights)")

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ("shots",) if self.config.per_shot else ()

    @property
    def input(self) -> VideoSpec:
        """The 30 fps grid; in windows, only the instants ``pick`` chooses are converted to RGB (per shot, all)."""
        c = self.config
        reads = None if c.per_shot else WindowReads(c.window_frames, c.stride_frames,
                                                    tuple(int(i) for i in self.pick(c.window_frames)))
        return VideoSpec(fps=c.fps, short_side=c.short_side, reads=reads)

    @property
    def time_grid(self) -> TimeGrid:
        if self.config.per_shot:
            return TimeGrid("window", None, None)
        c = self.config
        return TimeGrid("window", c.window_frames / c.fps, c.stride_frames / c.fps)

    @property
    def feature_names(self) -> list[str]:
        if self.logits:
            return self.weights_entry.category_names()
        return [f"{self.name}_{i:04d}" for i in range(self.feature_dim)]

    @property
    def crop(self) -> int:
        return self.weights_entry.preprocessing.crop

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        from mvfx.extractors.torchvision_compat import import_torchvision

        import_torchvision()  # before pytorchvideo imports it
        super().setup(device, random_weights)
        self.memory_format = prepare_network(self.model, self.device, 3, pytorchvideo_plan())

    def adapt(self) -> None:
        self.model = head_input_network(self.model, self.logits)

    def windows(self, n_frames: int) -> list[tuple[int, int]]:
        """(start, stop) frame ranges: full windows every stride; a short clip gets one window over all of it."""
        c = self.config
        if n_frames <= c.window_frames:
            return [(0, n_frames)]
        return [(s, s + c.window_frames) for s in range(0, n_frames - c.window_frames + 1, c.stride_frames)]

    def shot_ranges(self, starts: np.ndarray, shots: FeatureBlock) -> list[tuple[int, int]]:
        """(start, stop) indices into frames starting at ``starts`` for each shot (at least one frame each)."""
        ranges = []
        for a_s, b_s in shots.times:
            a = int(np.searchsorted(starts, a_s))
            ranges.append((a, max(int(np.searchsorted(starts, b_s)), a + 1)))
        return ranges

    def shots_of(self, context: dict) -> FeatureBlock:
        shots = context.get("shots")
        if shots is None:
            raise ClipError("extract", f"{self.name}: per-shot mode needs the shots extractor's rows")
        return shots

    def spans(self, data: Frames, context: dict | None) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Frame ranges to run and the [start, end] seconds of each row."""
        if not self.config.per_shot:
            ranges = self.windows(len(data.images))
            return ranges, np.array([[data.times[a, 0], data.times[b - 1, 1]] for a, b in ranges])
        shots = self.shots_of(context)
        return [(a, min(b, len(data.times))) for a, b in self.shot_ranges(data.times[:, 0], shots)], shots.times

    def rows(self, clips: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """One row per clip of already picked frames (T frames [H, W, 3] uint8 each, T = what ``pick`` chose), copied
        once into the batch."""
        frames = [frame for clip in clips for frame in clip]
        return self.rows_of(np.stack(frames).reshape(len(clips), -1, *frames[0].shape))

    def batch_rows(self, clips: np.ndarray) -> np.ndarray:
        """[B, T, H, W, 3] uint8 picked frames -> [B, D] rows (the pooled head input, or class probabilities)."""
        import torch

        with self.inference():
            out = self.forward(self.to_device(clips))
            return (torch.softmax(out.float(), dim=1) if self.logits else out).float().cpu().numpy()

    def window_rows(self, windows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """One row per window of consecutive frames, from the frames ``pick`` chooses in each (only those are copied)."""
        return self.rows([[frames[i] for i in self.pick(len(frames))] for frames in windows])

    def extract(self, data: Frames, info: ClipInfo, context: dict) -> FeatureBlock:
        if len(data.images) == 0:
            raise ClipError("extract", f"{info.path}: no frames for {self.name}")
        ranges, times = self.spans(data, context)
        clips = [data.images[a:b][self.pick(b - a)] for a, b in ranges]
        rows = [self.rows(clips[start : start + self.request_size]) for start in range(0, len(clips), self.request_size)]
        return FeatureBlock(np.concatenate(rows), times)

    def stream(self, info: ClipInfo, context: dict) -> Stream:
        """Windows as they fill; per shot, only the frames each shot's row uses (its shots are known up front)."""
        if not self.config.per_shot:
            c = self.config
            return Windows(self, info, context, self.window_rows, self.clip_batch(info), c.window_frames, c.stride_frames)
        shots = self.shots_of(context)
        starts = target_times(self.input, info.duration_s)[:, 0]
        plans = []
        for (a, b), span in zip(self.shot_ranges(starts, shots), shots.times):
            # the decoded frames may end up to two frames before the planned grid (the video ends before the audio)
            options = {n: a + self.pick(n - a) for n in (b, b - 1, b - 2) if n > a}
            plans.append(((float(span[0]), float(span[1])), options))
        return PickedFrames(self, info, context, self.rows, self.request_size, plans)

    @property
    def depends_on_whole(self) -> bool:
        return self.config.per_shot

    def frames_held(self, piece: int, info: ClipInfo) -> int:
        batch = self.clip_batch(info)
        if self.config.per_shot:
            return 3 * 32 * batch  # picked frames of the shots awaiting their batch, three possible ends each
        c = self.config
        return (batch - 1) * c.stride_frames + c.window_frames + piece

    def clip_batch(self, info: ClipInfo) -> int:
        """Windows per forward pass for this clip: the request size, but never more than the clip's own windows (a
        window batch holds its frames in host memory while it fills)."""
        if self.config.per_shot:  # the shots are not known when the clip is planned
            return self.request_size
        return max(1, min(self.request_size, len(self.windows(math.ceil(info.duration_s * self.config.fps)))))

    @property
    def frames_per_batch(self) -> int:
        return 1  # windows are batched by the stream, whatever the pieces they were decoded in

    def clips_tensor(self, clips):
        """[B, T, H, W, 3] uint8 on the device -> [B, 3, T, crop, crop] normalised, in the network's memory format."""
        prep = self.weights_entry.preprocessing
        pixels = centre_crop_normalise(clips, self.crop, prep.mean, prep.std).transpose(1, 2)
        return pixels.contiguous(memory_format=self.memory_format)


class _SlowFast(_KineticsVideoModel):
    version = "1"
    weights = (SLOWFAST_R50_K400,)
    feature_dim = 2304
    mb_per_item = 400.0

    def build(self):
        from pytorchvideo.models.hub import slowfast_r50

        return slowfast_r50(pretrained=False)

    def pick(self, n_frames: int) -> np.ndarray:
        """The fast pathway's 32 frames of a window (a window shorter than 64 frames repeats frames)."""
        fast_idx, _ = slowfast_indices(64, 32, 4)
        return uniform_subsample(n_frames, 64)[fast_idx]

    def forward(self, clips):
        """[B, T, H, W, 3] uint8 on the device: the slow pathway takes slowfast_indices' subset of the fast frames."""
        import torch

        slow = torch.as_tensor(uniform_subsample(clips.shape[1], clips.shape[1] // 4), device=clips.device)
        return self.model([self.clips_tensor(clips.index_select(1, slow)), self.clips_tensor(clips)])  # a fresh list: the model edits it


@register
class SlowFastR50(_SlowFast):
    name = "slowfast_r50"
    summary = "SlowFast R50 8x8 (Kinetics-400): 2304-d pooled features per 64-frame window (30 fps)"


@register
class SlowFastR50Logits(_SlowFast):
    name = "slowfast_r50_logits"
    summary = "SlowFast R50 8x8: the 400 Kinetics class probabilities per window"
    logits = True


class _I3D(_KineticsVideoModel):
    version = "1"
    weights = (I3D_R50_K400,)
    feature_dim = 2048
    mb_per_item = 200.0

    def build(self):
        from pytorchvideo.models.hub import i3d_r50

        return i3d_r50(pretrained=False)

    def pick(self, n_frames: int) -> np.ndarray:
        return uniform_subsample(n_frames, 8)

    def forward(self, clips):
        """[B, T, H, W, 3] uint8 on the device."""
        return self.model(self.clips_tensor(clips))


@register
class I3D(_I3D):
    name = "i3d"
    summary = "I3D R50 8x8 (pytorchvideo, Kinetics-400): 2048-d per 64-frame window, or per shot"


@register
class I3DLogits(_I3D):
    name = "i3d_logits"
    summary = "I3D R50: the 400 Kinetics class probabilities per window or per shot"
    logits = True
