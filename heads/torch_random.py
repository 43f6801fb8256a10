"""The torch heads draw every random number from a generator they own, never from torch's global RNG.

A head seeded the global RNG when it was fitted, so fitting one head changed the numbers of another fitted
beside it (in another thread, or between two of its steps) and the random numbers of whatever code called it.
Now a head's result depends on its own seed alone, and fitting it leaves the process's random state as it was:

- ``built(make, generator)`` builds a network on the meta device, where building draws nothing, then draws every
  parameter from ``generator`` with torch's default distributions (``initialise``);
- ``Dropout`` draws its masks from the generator that the training loop hands it (``torch_fit.fit``), where
  ``nn.Dropout``, and ``nn.LSTM``'s dropout between layers, draw from the global RNG.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)
_NO_RANDOMNESS = (nn.modules.batchnorm._NormBase, nn.LayerNorm)  # reset_parameters sets ones and zeros


class Dropout(nn.Module):
    """``nn.Dropout(p)`` whose masks come from ``generator``, set by ``torch_fit.fit`` before training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.generator is None:
            raise RuntimeError("Dropout in training without a generator: train through torch_fit.fit")
        keep = torch.empty(x.shape).bernoulli_(1 - self.p, generator=self.generator)  # drawn on the CPU, as the generator is
        return x * keep.to(device=x.device, dtype=x.dtype) / (1 - self.p)


def use_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Every ``Dropout`` of ``model`` draws its masks from ``generator`` from now on."""
    for module in model.modules():
        if isinstance(module, Dropout):
            module.generator = generator


def built(make: Callable[[], M], generator: torch.Generator) -> M:
    """``make()``'s network (on the CPU) with every parameter and buffer drawn or set by ``initialise``."""
    with torch.device("meta"):
        model = make()
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for module in model.modules():
            initialise(module, generator)
    return model


def initialise(module: nn.Module, generator: torch.Generator) -> None:
    """``module``'s own parameters as torch's ``reset_parameters`` draws them, from ``generator``: linear and
    convolution layers Kaiming-uniform (a = sqrt 5) weights and uniform(+-1/sqrt(fan in)) biases, LSTMs
    uniform(+-1/sqrt(hidden)); norm layers ones and zeros; a module of mvfx's own with buffers to draw defines
    ``initialise(generator)``. Any other module with parameters or buffers is refused, never left as it was."""
    if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
        nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
        if module.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    elif isinstance(module, nn.RNNBase):
        bound = 1 / math.sqrt(module.hidden_size)
        for weight in module.parameters():
            nn.init.uniform_(weight, -bound, bound, generator=generator)
    elif isinstance(module, _NO_RANDOMNESS):
        module.reset_parameters()
    elif hasattr(module, "initialise"):
        module.initialise(generator)
    elif next(module.parameters(recurse=False), None) is not None or next(module.buffers(recurse=False), None) is not None:
        raise TypeError(f"{type(module).__name__}: no rule to draw its parameters from a generator")
