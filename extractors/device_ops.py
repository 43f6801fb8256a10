"""How the frame and clip networks run on the CPU: BatchNorm folded, every convolution on oneDNN with its ReLU (and the
residual sum) in the same pass, channels-last memory.

In eval mode a BatchNorm right after a convolution is an affine map per output
channel, so it folds into the convolution's weight and bias. Channels-last memory
is the layout oneDNN's convolutions run fastest in. Each convolution then becomes a
``CpuConv``, which calls oneDNN (``torch.ops.mkldnn``) itself:

- torch sends a 3-D convolution whose batch x channels x frames x height is at
  most 20,480 (a 2-D heuristic applied to 5-D inputs) to its slow im2col kernel,
  which also returns contiguous memory that the next layers must copy back: 32
  of SlowFast's 110 convolutions, 23 of I3D's 53. oneDNN runs them all, in
  channels-last memory;
- a ReLU right after a convolution, and a residual block's ``ReLU(conv(x) +
  shortcut)``, are oneDNN post-ops of the convolution: each saves one or two
  memory-bound passes over, and an allocation of, an activation (ReLU and add
  were 27 % of SlowFast's CPU time). The residual sum is written into the
  shortcut, which nothing else reads in these ResNet-style networks.

Measured on 2 cores (fp32, one forward pass; as built -> channels-last alone ->
folded, in-place ReLUs, channels-last -> this, the last two the fastest of 14
on a shared machine): ResNet-50 on 16 frames 0.73 -> 0.50 -> 0.37 -> 0.35 s
(0.30 s once glibc reuses its blocks, ``pipeline.threads.reuse_large_blocks``),
SlowFast R50 on one window 0.89 -> 0.71 -> 0.59 -> 0.38 s, I3D R50 0.36 ->
0.28 -> 0.23 -> 0.15 s. Features stay within 1e-6 of their largest value
(tolerance 1e-5; tests/test_device_preprocess.py).

Under CPU autocast (``-o EXTRACTOR.precision=bf16``) and for inputs that are not float32,
``CpuConv`` runs torch's own convolution, ReLU and sum (the results of before);
where torch has no oneDNN the convolutions are not replaced. Measured on x86-64
only. On other devices the networks run as built.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ConvNorms = dict[type, tuple[tuple[str, str], ...]]  # module type -> (convolution, the BatchNorm its forward applies right after it)
ConvReLUs = dict[type, tuple[tuple[str, str, str], ...]]  # module type -> (convolution, its BatchNorm, the ReLU its forward applies
#                                                           right after them), the ReLU used for nothing else
Rewires = dict[type, Callable[["torch.nn.Module"], None]]  # module type -> gives a block of that type a forward over its CpuConvs


@dataclass(frozen=True)
class CpuPlan:
    """What ``prepare_network`` may fuse in a network's modules, by module type."""

    conv_norms: ConvNorms
    conv_relus: ConvReLUs = field(default_factory=dict)
    rewires: Rewires = field(default_factory=dict)  # residual blocks: ReLU(conv(x) + shortcut) in one pass where it applies


def memory_format(device: str, dims: int) -> torch.memory_format:
    """The layout for ``dims``-d convolutions on ``device``: channels-last on the CPU (faster there), else contiguous."""
    import torch

    if torch.device(device).type != "cpu":
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def prepare_network(model: torch.nn.Module, device: str, dims: int, plan: CpuPlan) -> torch.memory_format:
    """On the CPU: fold ``plan``'s BatchNorms, oneDNN convolutions with their ReLUs and residual sums, channels-last
    weights. Returns the inputs' memory format."""
    import torch

    layout = memory_format(device, dims)
    if torch.device(device).type == "cpu":
        fold_batch_norms(model, plan.conv_norms)
        relus_in_place(model)
        model.to(memory_format=layout)
        if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise_"):
            fuse_convolutions(model, plan)
    return layout


def fold_batch_norms(model: torch.nn.Module, conv_norms: ConvNorms) -> None:
    """Fold each eval-mode BatchNorm named in ``conv_norms`` (by its module's type) into its convolution.

    ``torch.nn.Sequential`` pairs ("0", "1") need no listing: a Sequential applies a convolution and a BatchNorm that
    follow each other in turn. Pairs whose attributes are not a (non-transposed) convolution and a BatchNorm are left alone.
    """
    import torch

    pairs = {torch.nn.Sequential: (("0", "1"),), **conv_norms}
    for module in list(model.modules()):
        for conv_name, norm_name in pairs.get(type(module), ()):
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            is_conv = isinstance(conv, torch.nn.modules.conv._ConvNd) and not conv.transposed
            if is_conv and isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                _fold(conv, norm)
                setattr(module, norm_name, torch.nn.Identity())


def _fold(conv: torch.nn.Module, norm: torch.nn.Module) -> None:
    """conv's weight and bias so that conv(x) equals norm(conv(x)) with norm's running statistics (float64 arithmetic)."""
    import torch

    with torch.no_grad():
        weight, mean, var = conv.weight.double(), norm.running_mean.double(), norm.running_var.double()
        gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
        beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + norm.eps)
        conv.weight.copy_(weight * scale.reshape(-1, *[1] * (weight.dim() - 1)))
        conv.bias = torch.nn.Parameter(((bias - mean) * scale + beta).to(conv.weight.dtype), requires_grad=False)


def relus_in_place(model: torch.nn.Module) -> None:
    """Every ReLU overwrites its input: right for ResNet-style networks, whose ReLUs take a tensor nothing else reads."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = True


def fuse_convolutions(model: torch.nn.Module, plan: CpuPlan) -> None:
    """Every plain 2-D/3-D convolution becomes a ``CpuConv``; ``plan.conv_relus``' ReLUs move into their convolution
    where the BatchNorm between was folded (the ReLU module becomes an Identity), then ``plan.rewires`` are called on
    their blocks (last: they see the CpuConvs)."""
    import torch

    cpu_conv = _cpu_conv_class()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if cpu_conv.takes(child):
                setattr(module, name, cpu_conv(child))
    for module in list(model.modules()):
        for conv_name, norm_name, relu_name in plan.conv_relus.get(type(module), ()):
            conv, norm, relu = (getattr(module, name, None) for name in (conv_name, norm_name, relu_name))
            folded = norm is None or type(norm) is torch.nn.Identity
            if isinstance(conv, cpu_conv) and not conv.relu and folded and type(relu) is torch.nn.ReLU:
                conv.relu = True
                setattr(module, relu_name, torch.nn.Identity())
        if type(module) in plan.rewires:
            plan.rewires[type(module)](module)


def __getattr__(name: str):
    if name == "CpuConv":  # defined on first use: importing this module must not import torch
        return _cpu_conv_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _cpu_conv_class() -> type:
    import torch
    import torch.nn.functional as F

    class CpuConv(torch.nn.Module):
        """A convolution (BatchNorm folded) run by oneDNN on the CPU, optionally with the ReLU that follows it in the same pass.

        ``add_relu_(x, shortcut)`` is ReLU(conv(x) + shortcut) in one pass, written into ``shortcut``.
        """

        def __init__(self, conv: torch.nn.Module) -> None:
            super().__init__()
            self.weight, self.bias = conv.weight, conv.bias
            self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
            self.groups, self.relu = conv.groups, False
            self._torch_conv = F.conv2d if conv.weight.dim() == 4 else F.conv3d

        @staticmethod
        def takes(module: torch.nn.Module) -> bool:
            """A plain 2-D or 3-D convolution: zero padding given in numbers, not transposed."""
            return (type(module) in (torch.nn.Conv2d, torch.nn.Conv3d) and module.padding_mode == "zeros"
                    and not isinstance(module.padding, str))

        def extra_repr(self) -> str:
            return (f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size={tuple(self.weight.shape[2:])}, "
                    f"stride={tuple(self.stride)}, padding={tuple(self.padding)}, relu={self.relu}")

        def _onednn(self, *tensors: torch.Tensor) -> bool:
            """oneDNN's fp32 kernels apply: float32 tensors and weights, no CPU autocast (bf16) asked for."""
            return (self.weight.dtype == torch.float32 and all(t.dtype == torch.float32 for t in tensors)
                    and not torch.is_autocast_enabled("cpu"))

        def _torch(self, x: torch.Tensor) -> torch.Tensor:
            """The convolution alone, by torch."""
            return self._torch_conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self._onednn(x):
                return self._torch(x).relu_() if self.relu else self._torch(x)
            return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                                            self.groups, "relu" if self.relu else "none", [], "")

        def add_relu_(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
            """ReLU(conv(x) + shortcut), written into ``shortcut`` (this convolution's output shape); conv without ``relu``."""
            if not self._onednn(x, shortcut):
                return shortcut.add_(self._torch(x)).relu_()
            return torch.ops.mkldnn._convolution_pointwise_(shortcut, x, self.weight, self.bias, self.padding, self.stride,
                                                             self.dilation, self.groups, "add", 1.0, "relu", [], "")

    return CpuConv
