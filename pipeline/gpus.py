"""Which GPU each worker process uses on a node with several.

``--device cuda`` means every GPU torch sees. The local cluster's workers are named 0 .. n-1 and take the
GPUs in turn, worker k the GPU k mod g. Each worker's batches are sized to its part of that GPU's memory
(``workers_per_gpu``). ``cuda:N`` pins every worker to GPU N.

A remote cluster's workers have no such number. There, start one worker per GPU with
``CUDA_VISIBLE_DEVICES`` set, as dask-cuda does: each worker then sees one GPU, its ``cuda:0``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mvfx.extractors.simulated_device import SimulatedDevice, is_simulated
from mvfx.extractors.torch_device import on_accelerator
from mvfx.pipeline.executor import dask_worker


@dataclass(frozen=True)
class GpuShare:
    """How a run's worker processes share the GPUs: ``gpus`` taken in turn, ``workers_per_gpu`` on each."""

    gpus: int = 1
    workers_per_gpu: int = 1
    remote: bool = False  # a remote cluster's workers: one GPU each, as their start set it

    def device_for(self, device: str, rank: int) -> str:
        """The device of the worker numbered ``rank``: ``cuda`` becomes its GPU when there are several."""
        return f"cuda:{rank % self.gpus}" if device == "cuda" and self.gpus > 1 else device

    def describe(self, device: str, workers: int) -> str:
        if self.remote:
            return f"{device} on each of {workers} workers, the GPU their start gave them (CUDA_VISIBLE_DEVICES)"
        if device != "cuda" or self.gpus <= 1:
            name = SimulatedDevice.parse(device).describe() if is_simulated(device) else device
            return f"{name}, shared by {workers} worker process(es)" if on_accelerator(device) else ""
        return f"{self.gpus} GPUs (cuda:0-{self.gpus - 1}) taken in turn by {workers} worker processes, {self.workers_per_gpu} per GPU"


def plan_gpus(device: str, workers: int, remote: bool, visible: int) -> GpuShare:
    """The share for ``workers`` local processes when ``device`` is a GPU and torch sees ``visible`` of them.

    A remote cluster's workers each size their batches to the whole of their GPU (one worker per GPU, see above).
    """
    if not on_accelerator(device):
        return GpuShare()
    if remote:
        return GpuShare(remote=True)
    gpus = max(1, visible) if device == "cuda" else 1
    gpus = min(gpus, max(1, workers))  # more GPUs than workers: the extra ones stay idle
    return GpuShare(gpus, math.ceil(max(1, workers) / gpus))


def visible_gpus() -> int:
    """GPUs torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def use_device(device: str) -> None:
    """Make ``cuda:N`` this process's current CUDA device, for any library that allocates on the current one."""
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(device)


def local_rank() -> int:
    """This worker's number in a local Dask cluster (0 in-process, and on workers without a number)."""
    name = getattr(dask_worker(), "name", None)
    return name if isinstance(name, int) else 0
