"""The MVF networks (Pandeya, Bhattarai & Lee 2021) and the parts they are built from.

Music sees a 2-channel log-mel magnitude + phase image [B, 2, mels, T] (2-D convolutions); video a frame stack
[B, 3, T, H, W] and faces a crop stack [B, 1, N, 48, 48] (3-D convolutions). Each modality network is one of:

- A0: standard convolutions in dense residual blocks (optionally squeeze-and-excitation);
- A1: filter-separable convolutions: an n x n x n filter split into 1 x n x n then n x 1 x 1 (audio: 1 x n then
  n x 1), no nonlinearity between, so the pair is a rank-1 factorisation of the full filter;
- A2: channel- and filter-separable: the A1 pair applied per channel (depthwise), then a 1 x 1 pointwise mix;
- A3: slow-fast: a slow pathway (every 4th time step, full width) and a fast one (every step, 1/4 width) of A1
  blocks that exchange information through an MMTM after every stage.

The paper leaves block counts, widths and kernel sizes open; mvfx's choices (three stages, widths per modality,
3 x 3 kernels, two dense layers per block) are in ``WIDTHS`` and the README, sized to train on a CPU.

What they are fed (``Normaliser``): the music image standardised per channel with the training clips' mean and
spread, frames and face crops (uint8) scaled to [0, 1] and normalised at batch time; on a GPU, under bf16
``autocast``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mvfx.heads.torch_random import Dropout

ARCHITECTURES = ("A0", "A1", "A2", "A3")
WIDTHS = {"music": (32, 64, 128), "video": (32, 64, 128), "face": (16, 32, 64)}
IN_CHANNELS = {"music": 2, "video": 3, "face": 1}
SLOW_STRIDE = 4  # the slow pathway sees every 4th time step
FAST_FRACTION = 4  # the fast pathway has 1/4 of the slow one's channels
MMTM_RATIO = 4
IMAGE_MEAN, IMAGE_STD = 0.45, 0.225  # the Kinetics-style normalisation of [0, 1] pixels


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


class SqueezeExcite(nn.Module):
    """Channel gates from the globally averaged map (Hu et al. 2018); works on 2-D and 3-D maps."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, max(channels // reduction, 4)), nn.ReLU(),
                                  nn.Linear(max(channels // reduction, 4), channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate(x.mean(dim=_spatial_dims(x)))
        return x * g.view(*g.shape, *([1] * (x.dim() - 2)))


class MMTM(nn.Module):
    """Multimodal Transfer Module (Joze et al. 2020): squeeze both maps to channel vectors, a joint layer over
    their concatenation, and per-branch channel gates 2 * sigmoid(W z) from that joint squeeze."""

    def __init__(self, channels_a: int, channels_b: int, ratio: int = MMTM_RATIO) -> None:
        super().__init__()
        joint = max((channels_a + channels_b) // ratio, 4)
        self.squeeze = nn.Sequential(nn.Linear(channels_a + channels_b, joint), nn.ReLU())
        self.to_a, self.to_b = nn.Linear(joint, channels_a), nn.Linear(joint, channels_b)

    def gates(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.squeeze(torch.cat([a.mean(dim=_spatial_dims(a)), b.mean(dim=_spatial_dims(b))], dim=1))
        return 2 * torch.sigmoid(self.to_a(z)), 2 * torch.sigmoid(self.to_b(z))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ga, gb = self.gates(a, b)
        return a * ga.view(*ga.shape, *([1] * (a.dim() - 2))), b * gb.view(*gb.shape, *([1] * (b.dim() - 2)))


class FilterSeparable(nn.Module):
    """n x n (x n) as 1 x n x n then n x 1 x 1 (3-D) or 1 x n then n x 1 (2-D; time is the last audio axis)."""

    def __init__(self, dims: int, cin: int, cout: int, k: int, stride: int, groups: int = 1) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        if dims == 3:  # [B, C, T, H, W]: space first, then time
            first, second = ((1, k, k), (1, stride, stride), (0, k // 2, k // 2)), ((k, 1, 1), (stride, 1, 1), (k // 2, 0, 0))
        else:  # [B, C, mels, T]: time (last axis) first, then frequency
            first, second = ((1, k), (1, stride), (0, k // 2)), ((k, 1), (stride, 1), (k // 2, 0))
        self.first = conv(cin, cout, first[0], first[1], first[2], groups=groups, bias=False)
        self.second = conv(cout, cout, second[0], second[1], second[2], groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class ChannelSeparable(nn.Module):
    """A1's filter pair applied to each channel alone (depthwise), then a 1 x 1 (x 1) pointwise mix of channels."""

    def __init__(self, dims: int, cin: int, cout: int, k: int, stride: int) -> None:
        super().__init__()
        self.depthwise = FilterSeparable(dims, cin, cin, k, stride, groups=cin)
        self.pointwise = (nn.Conv3d if dims == 3 else nn.Conv2d)(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def make_conv(arch: str, dims: int, cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    """The convolution an architecture uses (A3's pathways use A1's)."""
    if arch == "A0":
        return (nn.Conv3d if dims == 3 else nn.Conv2d)(cin, cout, k, stride, k // 2, bias=False)
    if arch == "A2":
        return ChannelSeparable(dims, cin, cout, k, stride)
    return FilterSeparable(dims, cin, cout, k, stride)


def _norm_relu(dims: int, channels: int) -> nn.Sequential:
    return nn.Sequential((nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(channels), nn.ReLU(inplace=True))


class DenseResidualBlock(nn.Module):
    """A strided convolution, then ``layers`` densely connected convolutions (each sees all earlier outputs),
    a 1 x 1 fusion back to ``cout`` channels, optional squeeze-and-excitation, and a residual sum."""

    def __init__(self, arch: str, dims: int, cin: int, cout: int, stride: int, se: bool, layers: int = 2) -> None:
        super().__init__()
        growth = max(cout // 2, 4)
        self.down = nn.Sequential(make_conv(arch, dims, cin, cout, 3, stride), _norm_relu(dims, cout))
        self.dense = nn.ModuleList(
            nn.Sequential(make_conv(arch, dims, cout + j * growth, growth), _norm_relu(dims, growth)) for j in range(layers)
        )
        conv1 = nn.Conv3d if dims == 3 else nn.Conv2d
        self.fuse = nn.Sequential(conv1(cout + layers * growth, cout, 1, bias=False),
                                  (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(cout))
        self.se = SqueezeExcite(cout) if se else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        features = [y]
        for layer in self.dense:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.relu(self.se(self.fuse(torch.cat(features, dim=1))) + y)


class ModalityNet(nn.Module):
    """One modality's network as three stages, so that stages can be interleaved with another modality's (MMTM).

    ``start(x)`` -> state; ``stage(i, state)`` -> state; ``joint(state)`` is the map a cross-modal MMTM gates
    (A3: the slow pathway) and ``replace(state, map)`` puts the gated map back; ``pool(state)`` -> [B, features].
    """

    def __init__(self, modality: str, arch: str, se: bool = False) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"architecture {arch!r}: one of {', '.join(ARCHITECTURES)}")
        self.modality, self.arch, self.squeeze_excite = modality, arch, se
        self.dims = 2 if modality == "music" else 3
        widths, cin = WIDTHS[modality], IN_CHANNELS[modality]
        self.time_axis = -1 if self.dims == 2 else 2
        self.stages = self._pathway("A1" if arch == "A3" else arch, cin, widths, se)
        self.channels = widths
        if arch == "A3":
            fast = tuple(max(w // FAST_FRACTION, 4) for w in widths)
            self.fast = self._pathway("A1", cin, fast, se)
            self.exchange = nn.ModuleList(MMTM(w, f) for w, f in zip(widths, fast))
            self.features = widths[-1] + fast[-1]
        else:
            self.features = widths[-1]

    def _pathway(self, arch: str, cin: int, widths: tuple[int, ...], se: bool) -> nn.ModuleList:
        blocks, previous = [], cin
        for width in widths:
            blocks.append(DenseResidualBlock(arch, self.dims, previous, width, 2, se))
            previous = width
        return nn.ModuleList(blocks)

    def start(self, x: torch.Tensor):
        if self.arch != "A3":
            return x
        index = torch.arange(0, x.shape[self.time_axis], SLOW_STRIDE, device=x.device)
        return x.index_select(self.time_axis % x.dim(), index), x

    def stage(self, i: int, state):
        if self.arch != "A3":
            return self.stages[i](state)
        slow, fast = self.stages[i](state[0]), self.fast[i](state[1])
        return self.exchange[i](slow, fast)

    def joint(self, state) -> torch.Tensor:
        return state[0] if self.arch == "A3" else state

    def replace(self, state, joint: torch.Tensor):
        return (joint, state[1]) if self.arch == "A3" else joint

    def pool(self, state) -> torch.Tensor:
        if self.arch != "A3":
            return state.mean(dim=_spatial_dims(state))
        return torch.cat([s.mean(dim=_spatial_dims(s)) for s in state], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.start(x)
        for i in range(len(self.stages)):
            state = self.stage(i, state)
        return self.pool(state)


def run_stages(nets: dict[str, ModalityNet], inputs: dict[str, torch.Tensor], mmtm: nn.ModuleDict | None) -> dict:
    """Every modality through its stages in step; with ``mmtm``, music and video gate each other after each of the
    last two stages (``MMTM_STAGES``). Returns each modality's final state."""
    states = {name: net.start(inputs[name]) for name, net in nets.items()}
    for i in range(len(WIDTHS["music"])):
        states = {name: nets[name].stage(i, state) for name, state in states.items()}
        if mmtm is not None and str(i) in mmtm:
            music, video = mmtm[str(i)](nets["music"].joint(states["music"]), nets["video"].joint(states["video"]))
            states["music"] = nets["music"].replace(states["music"], music)
            states["video"] = nets["video"].replace(states["video"], video)
    return states


MMTM_STAGES = (1, 2)  # stages after which music and video exchange (Joze et al. fuse the later layers)


def cross_modal_mmtm(nets: dict[str, ModalityNet]) -> nn.ModuleDict:
    return nn.ModuleDict({str(i): MMTM(nets["music"].channels[i], nets["video"].channels[i]) for i in MMTM_STAGES})


class MvfClassifier(nn.Module):
    """Any unimodal or multimodal combination: each modality network's globally averaged last map, concatenated, dropout,
    one linear layer to the classes. ``mmtm`` needs music and video."""

    def __init__(self, architectures: dict[str, str], n_classes: int, mmtm: bool = False, se: bool = False,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({m: ModalityNet(m, a, se) for m, a in architectures.items()})
        if mmtm and not {"music", "video"} <= set(architectures):
            raise ValueError("MMTM joins the music and video networks: give both")
        self.mmtm = cross_modal_mmtm(self.nets) if mmtm else None
        self.head = nn.Sequential(Dropout(dropout), nn.Linear(sum(n.features for n in self.nets.values()), n_classes))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states = run_stages(dict(self.nets), inputs, self.mmtm)
        return self.head(torch.cat([self.nets[m].pool(states[m]) for m in self.nets], dim=1))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- what the networks are fed: normalised inputs, under autocast on a GPU ------------------------------------------

@dataclass
class Normaliser:
    """Per-channel standardisation of the music input; fixed scaling of images."""

    music_mean: np.ndarray | None = None
    music_std: np.ndarray | None = None

    @classmethod
    def fitted(cls, x: dict[str, np.ndarray]) -> Normaliser:
        if "music" not in x:
            return cls()
        music = x["music"]
        return cls(music.mean(axis=(0, 2, 3)).astype(np.float32), music.std(axis=(0, 2, 3)).astype(np.float32) + 1e-6)

    def tensors(self, x: dict[str, np.ndarray], rows: np.ndarray, device: str) -> dict[str, torch.Tensor]:
        out = {}
        for m, values in x.items():
            t = torch.as_tensor(values[rows]).to(device)
            if m == "music":
                mean = torch.as_tensor(self.music_mean, device=device).view(1, -1, 1, 1)
                out[m] = (t - mean) / torch.as_tensor(self.music_std, device=device).view(1, -1, 1, 1)
            else:
                out[m] = (t.float() / 255.0 - IMAGE_MEAN) / IMAGE_STD
        return out


def autocast(device: str):
    """bf16 autocast on a GPU (batched mixed precision), nothing on the CPU."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
