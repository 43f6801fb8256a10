"""One mini-batch training loop with early stopping, shared by every torch head: its batches and dropout masks come
from one generator seeded with the head's seed (``torch_random``), never from torch's global RNG."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mvfx.heads.estimator import SEED
from mvfx.heads.torch_random import use_generator
from mvfx.media.rules import Interval


@dataclass(frozen=True)
class FitConfig:
    """The loop's settings: a head's same-named parameters (``estimator.by_name``), whose defaults are in its ``__init__``."""

    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    seed: int


# what those parameters (and dropout) may be, shared by the torch heads' ``_parameter_constraints``
FIT_RULES = {"lr": [Interval(float, 0, low_open=True)], "batch_size": [Interval(int, 1)], "max_epochs": [Interval(int, 1)],
             "patience": [Interval(int, 0)], "dropout": [Interval(float, 0, 1, high_open=True)], "seed": [SEED]}


def fit(
    model: torch.nn.Module,
    n_train: int,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    val_loss: Callable[[], float],
    cfg: FitConfig,
) -> int:
    """Adam on shuffled mini-batches of row indices; keep the weights of the best validation epoch.

    ``batch_loss(indices)`` returns the training loss of those rows; ``val_loss()`` the
    validation loss (called in eval mode, without gradients). Returns the best epoch.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    use_generator(model, generator)
    best_state, best, best_epoch, waited = copy.deepcopy(model.state_dict()), float("inf"), 0, 0
    for epoch in range(cfg.max_epochs):
        model.train()
        for batch in torch.randperm(n_train, generator=generator).split(cfg.batch_size):
            optimiser.zero_grad()
            batch_loss(batch).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            loss = val_loss()
        if loss < best - 1e-6:
            best_state, best, best_epoch, waited = copy.deepcopy(model.state_dict()), loss, epoch, 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return best_epoch
