"""A simulated GPU (``--device sim``): the CUDA code path without CUDA, with forward passes that take modelled time.

Tests and benchmarks need the GPU path's concurrency (clips in flight, shared forward passes, the memory guard,
the GPU batch plan) with passes that *take time*, as on a real device, on machines that have none. Under
``--device sim`` every network's forward pass is replaced (``SimulatedNetwork``) by a device model that

- takes the inputs the real network would get (uint8 frames uploaded and preprocessed as on CUDA; tensors stay in
  host memory, so that preprocessing counts as host work here, where a GPU would do it);
- waits, with the GIL released (as a CUDA synchronise does), for ``flops(batch) / rate + kernels * launch``: the
  network's FLOPs per item, counted once per input shape by ``torch.utils.flop_counter`` in one real pass of the
  architecture over one item on the CPU, times the batch, over a sustained rate, plus a launch latency per kernel
  (each operation of that pass that is not a view). The
  passes of every thread and process of a run go through one queue (``DeviceQueue``: a file all of them lock), so
  the simulated device, like a real one, runs one pass at a time;
- raises CUDA's out-of-memory error for passes of more than ``oom_items`` items (``MemoryGuard`` then halves them);
- returns outputs of the real network's shapes whose values are a fingerprint of each item's input (so that a test
  can tell whose rows a clip got) and negative, so that detectors find nothing (no boxes, no faces) and their
  host-side work stays that of an empty frame.

The batch plan reads the simulated free memory (``memory_gib``). Rows made on it are not features: extractors set up
on it load no weights, and a store records their weights as ``simulated`` (training and ``mvfx predict`` refuse them).
The model, its constants and their sources: docs/gpu.md, "The simulated device".
"""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

PREFIX = "sim"
# NVIDIA H100 SXM5 datasheet: 989 TFLOPS dense BF16 tensor-core peak; sustained at 22 %, the efficiency NVIDIA's
# DeepLearningExamples measured for ResNet-50 v1.5 inference with AMP at batch 256 on a V100 (3382 img/s x 8.2 GFLOP
# of a 125 TFLOPS peak). docs/gpu.md has the derivation.
H100_BF16_TFLOPS = 989.0
SUSTAINED_EFFICIENCY = 0.22
FP32_SLOWDOWN = 2.0  # precision=fp32: convolutions on TF32 tensor cores, half the BF16 rate (H100 datasheet)
VIEW_OPS = frozenset({"view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "unsqueeze", "squeeze",
                      "select", "slice", "as_strided", "alias", "detach", "split", "unbind", "chunk", "narrow",
                      "flatten", "unflatten", "movedim", "contiguous", "lift_fresh", "_to_copy", "to", "clone"})
# One pass planned at a time in a process. torch's dispatch modes (FlopCounterMode and the kernel counter) keep
# process-wide state (torch.utils._python_dispatch's mode flags, dynamo's frame hook around __torch_dispatch__): two
# threads planning at once, as clips in flight and the shared-forward threads of one worker do, crashed that worker in
# the interpreter (a segmentation fault in torch._library.simple_registry, 2026-12-08, in the warm-up of the
# deep 9 at -j 2: once in 8 repetitions of its warm-up; none seen in 32 since). A plan is made once per network and
# input shape, so the wait costs nothing after the first passes. Re-entrant: a network that holds a simulated one plans
# it inside its own plan.
_PLANNING = threading.RLock()


@dataclass(frozen=True)
class SimulatedDevice:
    """One simulated accelerator: its sustained rate, launch latency, free memory, and where its queue lives.

    Written as a device string, ``sim:tflops=217.6,launch_us=10,memory_gib=80,oom_items=0,queue=/tmp/...``; plain
    ``sim`` takes the defaults (an H100 at the stated efficiency) and a new queue (``resolve``).
    """

    tflops: float = round(H100_BF16_TFLOPS * SUSTAINED_EFFICIENCY, 1)  # sustained BF16 rate; inf: passes take no time
    launch_us: float = 10.0  # per kernel (one aten operation that is not a view): eager PyTorch's floor per launch
    memory_gib: float = 80.0  # free memory the batch plan reads (an H100 80 GB)
    oom_items: int = 0  # passes of more items run out of memory (0: never)
    queue: str = ""  # the file every process of the run queues its passes in

    @classmethod
    def parse(cls, device: str) -> SimulatedDevice:
        """The device a ``sim[:key=value,...]`` string describes; a one-line ValueError for anything else."""
        kind, _, settings = device.partition(":")
        if kind != PREFIX:
            raise ValueError(f"{device!r} is not a simulated device (sim[:key=value,...])")
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for pair in filter(None, settings.split(",")):
            key, _, text = pair.partition("=")
            if key not in types:
                raise ValueError(f"--device {device}: unknown setting {key!r}; known: {', '.join(types)}")
            convert, kind = {"float": (float, "a number"), "int": (int, "a whole number"), "str": (str, "")}[types[key]]
            try:
                values[key] = convert(text)
            except ValueError:
                raise ValueError(f"--device {device}: {key}={text!r} is not {kind}") from None
        made = cls(**values)
        if made.tflops <= 0 or made.launch_us < 0 or made.memory_gib <= 0 or made.oom_items < 0:
            raise ValueError(f"--device {device}: tflops and memory_gib must be > 0, launch_us and oom_items >= 0")
        return made

    def resolve(self) -> SimulatedDevice:
        """This device with a queue file of its own, if it has none yet (one per run, shared by its workers)."""
        if self.queue:
            return self
        fd, path = tempfile.mkstemp(prefix="mvfx-sim-", suffix=".queue", dir=_queue_folder())
        os.close(fd)
        DeviceQueue(path).configure(self.tflops, self.launch_us)
        return replace(self, queue=path)

    def spec(self) -> str:
        """The device string that ``parse`` reads back (what workers receive)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return f"{PREFIX}:" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    def describe(self) -> str:
        tflops, launch_us = DeviceQueue(self.queue).speed() if self.queue else (self.tflops, self.launch_us)
        rate = "no time per pass" if math.isinf(tflops) else f"{tflops:g} TFLOP/s sustained, {launch_us:g} us per kernel"
        return f"simulated GPU ({rate}, {self.memory_gib:g} GiB)"

    @property
    def free_bytes(self) -> int:
        return int(self.memory_gib * 2**30)


def is_simulated(device: str) -> bool:
    return device == PREFIX or device.startswith(PREFIX + ":")


def _queue_folder() -> str | None:
    """Shared memory where there is some (queue files are small and hot), else the temporary folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class DeviceQueue:
    """The simulated device itself: its one queue of passes, and its speed, shared by every thread and process of a
    run through a small file that each of them locks.

    The file holds four doubles: when the device is next free (``time.monotonic``, which all processes of a machine
    share), the seconds it has been busy, its sustained TFLOP/s and its launch latency in microseconds. A pass starts
    when the device is free, and its caller sleeps until it ends. (The speed lives here, not in the device string,
    so that a benchmark can change it between runs without setting the networks up again: ``configure``.)
    """

    _RECORD: ClassVar[struct.Struct] = struct.Struct("dddd")
    _open: ClassVar[dict[tuple[str, int], int]] = {}  # (path, pid) -> file descriptor, one per process
    _threads: ClassVar[threading.Lock] = threading.Lock()  # flock does not exclude threads that share a descriptor

    def __init__(self, path: str) -> None:
        self.path = path

    def _fd(self) -> int:
        key = (self.path, os.getpid())
        if key not in self._open:
            self._open[key] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._open[key]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[float]]:
        """The record, exclusively; what the block leaves in the list is written back."""
        with self._threads:
            fd = self._fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(fd, self._RECORD.size, 0)
                record = list(self._RECORD.unpack(raw)) if len(raw) == self._RECORD.size else [0.0, 0.0, math.inf, 0.0]
                before = list(record)
                yield record
                if record != before:
                    os.pwrite(fd, self._RECORD.pack(*record), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def configure(self, tflops: float, launch_us: float) -> None:
        """Set the device's speed (for the passes queued from now on)."""
        with self._locked() as record:
            record[2:] = [tflops, launch_us]

    def run(self, flops: float, kernels: int, slowdown: float = 1.0) -> tuple[float, float]:
        """Queue a pass of ``flops`` in ``kernels`` launches (``slowdown``: 2 in fp32) and return when the device has
        finished it, sleeping meanwhile (so the GIL is free); returns when it started and ended (``time.monotonic``)."""
        with self._locked() as record:
            free_at, busy, tflops, launch_us = record
            seconds = flops * slowdown / (tflops * 1e12) + kernels * launch_us * 1e-6
            now = time.monotonic()
            start = max(now, free_at)
            record[:2] = [start + seconds, busy + seconds]
        if start + seconds > now:
            time.sleep(start + seconds - now)
        return start, start + seconds

    def speed(self) -> tuple[float, float]:
        """(sustained TFLOP/s, launch latency in microseconds)."""
        with self._locked() as record:
            return record[2], record[3]

    def busy_seconds(self) -> float:
        """Seconds of passes queued so far, by every process (the benchmark's device time)."""
        with self._locked() as record:
            return record[1]


@dataclass(frozen=True)
class _PassPlan:
    """What one item of a given input shape costs and gives: FLOPs, kernels, and the outputs' shapes after the batch."""

    flops: float
    kernels: int
    outputs: Any  # the pytree spec of the outputs
    shapes: tuple[tuple[tuple[int, ...], Any], ...]  # per output leaf: its shape without the batch, its dtype


def simulated_network(network: torch.nn.Module, device: SimulatedDevice, name: str, precision: str) -> torch.nn.Module:
    """``network`` with its forward passes replaced by the simulated device's."""
    import torch

    class SimulatedNetwork(torch.nn.Module):
        """Runs no arithmetic: waits for the modelled time of the pass, returns fingerprint outputs of the right shapes."""

        def __init__(self) -> None:
            super().__init__()
            # Kept out of the module tree, so that nothing (CPU fusion, .to(), state_dict) treats it as a part of this one.
            object.__setattr__(self, "network", network.eval())
            self.plans: dict[tuple, _PassPlan] = {}
            self.queue = DeviceQueue(device.queue)

        def forward(self, *inputs):
            leaves, _ = torch.utils._pytree.tree_flatten(inputs)
            tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
            items = int(tensors[0].shape[0])
            if device.oom_items and items > device.oom_items:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated: {name} holds {device.oom_items} "
                                                  f"items per pass, asked for {items})")
            plan = self._plan(inputs, tensors)
            self.queue.run(plan.flops * items, plan.kernels, FP32_SLOWDOWN if precision == "fp32" else 1.0)
            marks = fingerprint(tensors[0])
            leaves = [_filled(marks, shape, dtype) for shape, dtype in plan.shapes]
            return torch.utils._pytree.tree_unflatten(leaves, plan.outputs)

        def _plan(self, inputs, tensors) -> _PassPlan:
            key = tuple((tuple(t.shape[1:]), t.dtype) for t in tensors)
            if key not in self.plans:
                self.plans[key] = plan_pass(self.network, inputs)
            return self.plans[key]

    return SimulatedNetwork()


def plan_pass(network: torch.nn.Module, inputs: tuple) -> _PassPlan:
    """Run ``network`` on one item of ``inputs``, on the CPU: its FLOPs, its kernels, its outputs' shapes.

    (The meta device would spare the arithmetic, but measured slower here, 0.25 s for ResNet-50, 1.2 s for SlowFast,
    and some networks, Ultralytics' detection heads, read values in their pass.)"""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class KernelCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.kernels = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.kernels += func.overloadpacket.__name__.rstrip("_") not in VIEW_OPS
            return func(*args, **(kwargs or {}))

    one = torch.utils._pytree.tree_map(lambda t: t[:1].float() if isinstance(t, torch.Tensor) and t.is_floating_point()
                                       else t[:1] if isinstance(t, torch.Tensor) else t, inputs)
    one = tuple(list(a) if isinstance(a, list) else a for a in one)  # a fresh list: multi-pathway models edit theirs
    with _PLANNING, torch.inference_mode(), FlopCounterMode(display=False) as flops, KernelCounter() as counter:
        out = network(*one)
    leaves, spec = torch.utils._pytree.tree_flatten(out)
    return _PassPlan(float(flops.get_total_flops()), counter.kernels, spec,
                     tuple((tuple(t.shape[1:]), t.dtype) for t in leaves))


def fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """One number in [0.5, 1.5) per item, from a few of its values (eight along each axis, through a view: no copy
    of the item): the same input gives the same number whatever shares its batch, two different inputs almost surely
    different ones."""
    import torch

    picked = tensor[(slice(None), *(slice(None, None, max(1, n // 8)) for n in tensor.shape[1:]))]
    sums = picked.double().sum(dim=tuple(range(1, tensor.dim()))) if tensor.dim() > 1 else tensor.double()
    return 0.5 + torch.remainder(sums * 0.6180339887, 1.0)


def _filled(marks: torch.Tensor, shape: tuple[int, ...], dtype) -> torch.Tensor:
    """An output of ``shape`` per item: minus the item's mark, times 1 + column / columns (so a softmax keeps the
    mark), negative so that no detector finds anything; in the output's own type.

    A broadcast view of one [items, last dimension] array, not a full tensor: a real device writes its outputs in
    its own memory, so writing YOLO's 7.6 MB per frame here would be host work a GPU node does not do (it was
    4.8 ms of CPU a frame, more than the rest of the pass). Its consumers only read it."""
    import torch

    if not dtype.is_floating_point:
        return torch.zeros((), dtype=dtype).expand(len(marks), *shape)
    columns = shape[-1] if shape else 1
    ramp = (1.0 + torch.arange(columns, dtype=torch.float64) / columns).to(dtype)
    return (ramp * (-marks).to(dtype).reshape(-1, *[1] * len(shape))).expand(len(marks), *shape)
