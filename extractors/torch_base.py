"""The template every neural extractor follows: build, load weights, move, eval; batched autocast forwards.

``setup(device, random_weights)`` resolves the device, calls ``build()`` with
torch's generator seeded in a fork of it (so ``--random-weights`` gives the same
network on every worker and run, and nothing else's random numbers change),
loads the registry's checkpoint unless random weights were asked for
(``weights_path`` -> ``load_checkpoint`` -> ``unwrap_state_dict`` ->
``rename_key`` -> strict key and shape checks), calls ``adapt()`` (e.g. to
replace a classifier by the identity after loading) and puts the model in
eval mode on the device. On a simulated GPU (``--device sim``) the network is
then replaced by its simulated passes (``simulated_device``). ``run_batches``
and ``inference`` give every extractor the same batching (``batch_size`` 0 =
automatic) and precision (``auto`` = bf16 autocast on CUDA, fp32 on the CPU).

Determinism: with the same weights and input, outputs depend on torch's
intra-op thread count only through float32 summation order. An in-process
run uses every core, a Dask worker one thread; measured on ResNet-50
(random weights) the two differ by at most 4e-7 of the largest value, and
the tests hold every torch extractor to a relative tolerance of 1e-5 across
thread counts. Non-neural extractors are bitwise equal on every executor.
"""
from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from mvfx.extractors.base import Config, Extractor, option
from mvfx.extractors.batching import SharedForward
from mvfx.extractors.checkpoints import load_checkpoint, load_state_dict_strict, unwrap_state_dict
from mvfx.extractors.image_ops import upload
from mvfx.extractors.simulated_device import simulated_network
from mvfx.extractors.torch_device import (
    PRECISIONS,
    MemoryGuard,
    auto_batch_size,
    autocast,
    device_free_memory,
    on_accelerator,
    resolve_device,
)
from mvfx.extractors.weight_registry import WeightFile
from mvfx.extractors.weights import require

T = TypeVar("T")


def seeded(build: Callable[[], T]) -> T:
    """``build()`` with torch's random generator seeded to 0 (the same random network on every worker and run) and
    restored afterwards: setting up an extractor never changes the random numbers of anything else in the process."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


@dataclass(frozen=True)
class TorchConfig(Config):
    """Options every neural extractor has."""

    batch_size: int = option(0, minimum=0)  # items per forward pass; 0: automatic
    precision: str = option("auto", choices=PRECISIONS)


class TorchExtractor(Extractor):
    """Base of the neural extractors; subclasses implement ``build`` (and ``extract``)."""

    config_class = TorchConfig
    cpu_batch_size: ClassVar[int] = 16  # automatic batch size on the CPU
    mb_per_item: ClassVar[float] = 60.0  # GPU memory one item needs, for the automatic batch size
    gpu_batch_cap: ClassVar[int] = 256  # automatic batch size on a GPU at most (larger stops paying)
    # Clips in flight may feed one instance at once: a network's pass keeps nothing on the module or the extractor
    # between calls (no forward hook that stores a result; tested with passes that take time, test_simulated_device).
    thread_safe = True
    device_free: int | None = None  # bytes free on the GPU when set up (tests set a simulated figure)
    shared: SharedForward | None = None  # set when clips in flight merge their forward passes (``batch_rows``)

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        self.memory = MemoryGuard(self.name)  # forward passes split in halves when the GPU runs out of memory

    @abstractmethod
    def build(self):
        """The torch module, with the architecture the checkpoint was saved from (None: no network needed)."""

    def rename_key(self, key: str) -> str:
        """Map a checkpoint key onto the module's (default: strip DataParallel's ``module.``)."""
        return key.removeprefix("module.")

    def weights_path(self) -> Path:
        return require(self.weights_entry)[0]

    @property
    def weights_entry(self) -> WeightFile:
        """The main weight file of this configuration (the first of ``weights``): its preprocessing and class names."""
        return self.weights[0]

    def adapt(self) -> None:
        """Change the network after its weights are loaded (default: keep it)."""

    def load_weights(self) -> None:
        """The registry's checkpoint into ``self.model`` (override for several files or another format)."""
        state = unwrap_state_dict(load_checkpoint(self.weights_path(), self.name))
        load_state_dict_strict(self.model, state, self.name, rename=self.rename_key)

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        super().setup(resolve_device(device), random_weights)
        self.device_free = device_free_memory(self.target_device)  # the process's one reading, before its first model
        self.model = seeded(self.build)
        if self.model is None:  # a configuration without a network (faces with the Haar detector)
            return
        if not self.random_weights:
            self.load_weights()
        self.adapt()
        if self.simulated is not None:
            self.model = simulated_network(self.model, self.simulated, self.name, self.config.precision)
        self.model.to(self.device).eval()

    @property
    def batch_size(self) -> int:
        return auto_batch_size(self.config.batch_size, self.target_device, self.cpu_batch_size, self.mb_per_item,
                               self.gpu_batch_cap, self.device_free, self.gpu_workers)

    @property
    def request_size(self) -> int:
        """Items a clip's stream hands to one forward pass: the batch size on the CPU. On a GPU at most the CPU's
        batch, so that a clip's work reaches the device as it is decoded rather than in one burst when a clip-sized
        batch is full; the GPU's batch is what a shared pass merges from the clips in flight (``rows_of``), up to
        ``batch_size`` (measured on the simulated device: the device sat idle while clips filled 256-frame batches).
        A batch size the user set is used as it is."""
        if not on_accelerator(self.target_device) or self.config.batch_size:
            return self.batch_size
        return min(self.batch_size, self.cpu_batch_size)

    @property
    def frames_per_batch(self) -> int:
        return self.request_size

    @contextlib.contextmanager
    def inference(self):
        """No gradients, and autocast at the configured precision."""
        import torch

        with torch.inference_mode(), autocast(self.target_device, self.config.precision):
            yield

    def to_device(self, array: np.ndarray):
        """The array as a tensor on the device, in its own dtype (uint8 frames stay uint8; pinned on CUDA)."""
        return upload(array, self.device)

    def batch_rows(self, items: np.ndarray) -> np.ndarray:
        """Rows of one batch of uint8 items (frames, or the picked frames of windows), computed on the device.

        Extractors that implement it merge the forward passes of the clips in flight (``rows_of``).
        """
        raise NotImplementedError(f"{self.name} computes its rows another way")

    def share_forward_passes(self) -> None:
        super().share_forward_passes()
        if type(self).batch_rows is not TorchExtractor.batch_rows:
            self.shared = SharedForward(self._guarded_batch_rows, self.batch_size, self.name)

    def rows_of(self, items: np.ndarray) -> np.ndarray:
        """``batch_rows(items)``, merged with other clips' requests when clips in flight share this extractor."""
        return self.shared(items) if self.shared is not None else self._guarded_batch_rows(items)

    def _guarded_batch_rows(self, items: np.ndarray) -> np.ndarray:
        return self.memory(self.batch_rows, items)

    def drain_report(self) -> tuple[list[str], float]:
        return self.memory.drain()

    def run_batches(self, forward: Callable, items: np.ndarray, dim: int) -> np.ndarray:
        """``forward(tensor on device) -> tensor`` over ``items`` in batches; float32 numpy out."""
        def rows(batch: np.ndarray) -> np.ndarray:
            return forward(self.to_device(batch)).float().cpu().numpy()

        out = []
        with self.inference():
            for start in range(0, len(items), self.batch_size):
                out.append(self.memory(rows, items[start : start + self.batch_size]))
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)
