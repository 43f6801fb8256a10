"""What an extraction run will do, worked out before anything runs: ``plan(settings, store)`` -> ``RunPlan``.

A plan holds the run's extractors (with the dependencies they need added, options checked, provenance built, so
missing weights fail here), the corpus's clips, the (clip, extractor) pairs the store lacks, and the resources the
run will take: how many workers and clips in flight, the threads, the GPU share, and the memory a clip needs.
``mvfx extract --dry-run`` prints it; ``pipeline.run.execute`` carries it out. As lhotse's feature builder, it
needs no store to exist: with none, every pair is to do.

Resume is the plan itself: a pair already committed in the store is never scheduled again, so re-running a command
only does what an earlier run did not finish (or what failed).
"""
from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

from mvfx.extractors import create
from mvfx.extractors.base import Extractor
from mvfx.extractors.simulated_device import is_simulated
from mvfx.extractors.torch_device import on_accelerator, resolve_device
from mvfx.media.errors import MvfxError
from mvfx.pipeline.corpus import ClipSource, Discovery, discover
from mvfx.pipeline.executor import DaskExecutor, InProcessExecutor, clips_per_worker, local_cores, machine_memory
from mvfx.pipeline.gpus import GpuShare, plan_gpus, visible_gpus
from mvfx.pipeline.tasks import ExtractorSpec
from mvfx.pipeline.threads import ThreadBudget

COMMON_LIBRARIES = ("mvfx", "numpy", "av", "zarr")
PLAN_REPORT_EVERY = 1000  # clips checked between two reports of the "plan" stage


@dataclass(frozen=True)
class RunSettings:
    """Everything a run is asked to do, as ``mvfx extract`` takes it (see its ``--help`` for each setting)."""

    corpus: str
    store: str
    extractors: tuple[str, ...]
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    workers: int | None = None  # worker processes; None: one per core (in-process for tiny jobs)
    scheduler: str | None = None  # an existing Dask cluster
    device: str = "cpu"  # cpu, cuda, cuda:N, or sim[:...] (a simulated GPU, docs/gpu.md)
    dtype: str = "float32"
    break_lock: bool = False
    compact: bool = True
    random_weights: bool = False
    clip_memory: int = 0  # bytes of frames a clip may hold; 0: half a worker's memory per clip in flight
    commit_every_s: float = 10.0  # 0: commit after every clip
    clips_in_flight: int = 0  # per worker; 0: automatic (``default_clips_in_flight``)
    decode: str = "auto"  # auto | cpu | cuda (NVDEC)


class StoreState(Protocol):
    """What planning reads of a store: the clips each extractor has, and the clips' records (a writer is one)."""

    def done(self, extractor: str) -> Container[str]: ...

    def clip_records(self): ...


class NoStore:
    """The state of a store that does not exist yet: nothing done, no records."""

    def done(self, extractor: str) -> Container[str]:
        return ()

    def clip_records(self) -> dict:
        return {}


class StoredState:
    """A store's state read without its writer (no lock taken): for a plan that only shows what would run."""

    def __init__(self, store) -> None:
        self.store = store  # an open reader (``stores.open_store``)

    def done(self, extractor: str) -> Container[str]:
        return self.store.index(extractor).keys() if extractor in self.store.extractors() else ()

    def clip_records(self) -> dict[str, dict]:
        table = self.store.clips()
        return {clip_id: {"size_bytes": size} for clip_id, size in zip(table["clip_id"], table["size_bytes"])}


@dataclass(frozen=True)
class Resources:
    """What a run takes: its executor (not started yet), threads, GPU share and the memory of its clips."""

    executor: str  # in words, e.g. "local dask cluster (2 worker processes)"
    workers: int
    clips_in_flight: int  # per worker
    budget: ThreadBudget | None  # None on a remote cluster: each worker's share is known once it is reached
    gpus: GpuShare
    clip_memory: int  # bytes a clip may use (--clip-memory, or its automatic share)

    def start(self, settings: RunSettings, gpu_resource: bool):
        """The executor this plan chose, started (a local cluster comes up here)."""
        if settings.scheduler:
            return DaskExecutor(scheduler=settings.scheduler, resources={"GPU": 1} if gpu_resource else None)
        if self.workers <= 1:
            return InProcessExecutor(self.clips_in_flight)
        return DaskExecutor(workers=self.workers, resources={"GPU": 1} if gpu_resource else None,
                            clips_in_flight=self.clips_in_flight)


@dataclass(frozen=True)
class RunPlan:
    """A run worked out: extractors, clips, what is missing for which clips, and the resources it takes."""

    settings: RunSettings
    extractors: tuple[Extractor, ...]  # dependencies first where a per-shot extractor needs shots
    specs: Mapping[str, ExtractorSpec]  # what a worker rebuilds each extractor from
    descriptions: tuple[dict, ...]  # each extractor's provenance, as the store records it
    dtypes: Mapping[str, str]  # storage type per extractor
    found: Discovery
    todo: tuple[tuple[ClipSource, tuple[ExtractorSpec, ...]], ...]  # per clip: its source and the extractors it lacks
    skipped: int  # pairs already in the store
    changed: tuple[tuple[str, str], ...]  # (clip, one line): files changed since they were extracted; not planned
    resources: Resources

    @property
    def gpu(self) -> bool:
        """Networks run on an accelerator (remote GPU workers must declare the ``GPU`` resource)."""
        return self.settings.device != "cpu" and any(e.weights for e in self.extractors)

    def against(self, store: StoreState, on_plan: Callable[[str, int, int | None], None] | None = None) -> RunPlan:
        """The same run planned again against ``store`` (the writer, once it holds the lock)."""
        todo, skipped, changed = _missing(self.found.clips, self.extractors, self.specs, store, on_plan)
        return replace(self, todo=todo, skipped=skipped, changed=changed,
                       resources=_resources(self.settings, len(todo), self.extractors))

    def describe(self, memory: tuple[int, str, str] | None = None) -> list[str]:
        """The plan in a few lines, for ``mvfx extract --dry-run``; ``memory``: an example clip's need (``clip_need``)."""
        s, r = self.settings, self.resources
        pairs = sum(len(missing) for _, missing in self.todo)
        lines = [f"clips: {len(self.todo)} to do of {len(self.found.clips)} found ({pairs} clip x extractor pairs; "
                 f"{self.skipped} already in {s.store}; {len(self.found.problems)} not readable as clips; "
                 f"{len(self.changed)} changed since they were extracted)",
                 "extractors: " + ", ".join(f"{d['extractor']} (weights {_weights(d)})" for d in self.descriptions),
                 f"workers: {r.executor}"]
        lines.append(f"threads: {r.budget.describe()}" if r.budget else "threads: each worker's share of its machine")
        if on_accelerator(s.device):
            lines.append(f"GPUs: {r.gpus.describe(s.device, r.workers)}")
        if memory:
            needed, worst, clip = memory
            held = f"{needed / 2**30:.2f} GiB of frames for {clip} ({worst})" if needed else f"no video frames for {clip}"
            lines.append(f"memory per clip: {held}; a clip may use {r.clip_memory / 2**30:.1f} GiB")
        return lines


def plan(settings: RunSettings, store: StoreState | None = None,
         on_plan: Callable[[str, int, int | None], None] | None = None) -> RunPlan:
    """Work out ``settings`` against ``store`` (None: as if it did not exist). Bad options, unknown extractors and
    missing weights fail here, in one line, before any work; ``on_plan(stage, done, total)`` follows discovery
    ("discover", total None) and the check against the store ("plan")."""
    if is_simulated(settings.device):
        settings = replace(settings, device=resolve_device(settings.device))  # its settings, and its workers' queue
    if settings.scheduler and settings.clips_in_flight:
        raise MvfxError("--clips-in-flight applies to the workers mvfx starts; a cluster's workers run as many clips at "
                        "once as they have threads (start them with `dask worker --nthreads N`)")
    extractors = _with_dependencies(settings)
    simulated = is_simulated(settings.device)  # its networks compute nothing: no weights needed, and none recorded
    random = {e.name: (settings.random_weights or simulated) and bool(e.weights) for e in extractors}
    descriptions = tuple(provenance(e, random[e.name], simulated) for e in extractors)  # missing weights fail here
    specs = {e.name: ExtractorSpec(e.name, tuple(sorted(settings.options.get(e.name, {}).items())), random[e.name])
             for e in extractors}
    found = discover(settings.corpus, on_found=(lambda n: on_plan("discover", n, None)) if on_plan else None)
    dtypes = {e.name: e.storage_dtype or settings.dtype for e in extractors}
    empty = RunPlan(settings, tuple(extractors), specs, descriptions, dtypes, found, (), 0, (),
                    _resources(settings, 0, extractors))
    return empty.against(store or NoStore(), on_plan if store is not None else None)


def provenance(extractor: Extractor, random_weights: bool, simulated: bool = False) -> dict:
    """How ``extractor``'s features are made, as the store records them (a missing weight file fails here)."""
    weights = extractor.weights_provenance(random_weights, simulated)
    return extractor.describe() | weights | {"library_versions": library_versions(extractor)}


def library_versions(extractor: Extractor) -> dict[str, str]:
    return {dist: _installed_version(dist) for dist in (*COMMON_LIBRARIES, *extractor.libraries)}


@functools.cache
def _installed_version(dist: str) -> str:
    """The installed version of ``dist``, or "unknown". Read once per process: each lookup scans the installed
    packages' metadata, and every extractor names the common libraries again (all 13: 38 -> 9 ms a run)."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def default_clips_in_flight(device: str) -> int:
    """1 on the CPU, where the networks already use every core; 3 per worker on a GPU, so that while one clip
    decodes another's windows are on the device and their forward passes merge (measured: see the README)."""
    return 1 if device == "cpu" else 3


def clip_need(plan: RunPlan) -> tuple[int, str, str] | None:
    """(bytes, the request that needs the most, clip id) for the first clip to do, probed (for the dry run)."""
    from mvfx.media.errors import ClipError
    from mvfx.media.probe import probe
    from mvfx.pipeline.streaming import memory_needed

    if not plan.todo:
        return None
    clip, missing = plan.todo[0]
    try:
        info = probe(clip.path)
    except ClipError:
        return None
    budget = plan.resources.budget or ThreadBudget(local_cores(), plan.resources.clips_in_flight)
    runnable = [e for e in plan.extractors if e.name in {s.name for s in missing}]
    needed, worst = memory_needed(info, runnable, decoder_threads=budget.per_decoder, lanes=on_accelerator(plan.settings.device))
    return needed, worst, clip.clip_id


def _with_dependencies(settings: RunSettings) -> list[Extractor]:
    """The extractors asked for, built from their options, with the ones they depend on (e.g. shots) put first."""
    options = settings.options
    extractors = [create(name, **options.get(name, {})) for name in settings.extractors]  # bad options fail here
    for extractor in list(extractors):
        for dependency in extractor.depends_on:
            if dependency not in [e.name for e in extractors]:
                extractors.insert(0, create(dependency, **options.get(dependency, {})))
    _check_options_used(options, [e.name for e in extractors])
    return extractors


def _check_options_used(options: Mapping[str, Mapping[str, str]], running: list[str]) -> None:
    """An option for an extractor that will not run was silently ignored: refuse it, naming it."""
    from mvfx.extractors import names

    for name, fields in options.items():
        option = f"-o {name}.{next(iter(fields), '...')}"
        if name not in names():
            raise MvfxError(f"{option}: no extractor is called {name!r}; see `mvfx extractors`")
        if fields and name not in running:  # an empty map asks for nothing (the Python API's {name: {}})
            raise MvfxError(f"{option}: {name} is not among the extractors of this run ({', '.join(running)}); add it to -e")


def _missing(clips: list[ClipSource], extractors, specs, store: StoreState,
             on_plan: Callable[[str, int, int | None], None] | None):
    """(todo, pairs skipped, changed clips) of ``clips`` against what ``store`` holds.

    A file whose size differs from what the store recorded is reported, not mixed in (a size check costs one stat,
    and only for clips the store has a record of; hashing a whole corpus on every resume would cost far more).
    """
    done = {e.name: store.done(e.name) for e in extractors}
    records = store.clip_records()
    todo, shared, changed, skipped = [], {}, [], 0  # clips lacking the same extractors share one tuple
    for n, clip in enumerate(clips, start=1):
        if on_plan and n % PLAN_REPORT_EVERY == 0:
            on_plan("plan", n, len(clips))
        recorded = (records.get(clip.clip_id) or {}).get("size_bytes") or 0
        size = _size(clip.path, recorded) if recorded else 0
        if recorded and size != recorded:
            changed.append((clip.clip_id, f"{clip.path}: file changed since it was extracted into this store "
                                          f"({recorded} -> {size} bytes); extract into a new store"))
            continue
        missing = tuple(specs[e.name] for e in extractors if clip.clip_id not in done[e.name])
        skipped += len(extractors) - len(missing)
        if missing:
            todo.append((clip, shared.setdefault(missing, missing)))
    if on_plan:
        on_plan("plan", len(clips), len(clips))
    return tuple(todo), skipped, tuple(changed)


def _size(path: str, otherwise: int) -> int:
    """Bytes of the file at ``path``; ``otherwise`` when it is gone or not a file (its task will say so)."""
    try:
        info = os.stat(path)
    except OSError:
        return otherwise
    return info.st_size if stat.S_ISREG(info.st_mode) else otherwise


def _resources(settings: RunSettings, n_tasks: int, extractors) -> Resources:
    """The executor, threads, GPU share and clip memory that ``make_executor``'s rules give ``n_tasks`` clips."""
    in_flight = settings.clips_in_flight or default_clips_in_flight(settings.device)
    gpu = on_accelerator(settings.device)
    if settings.scheduler:
        return Resources(f"dask cluster at {settings.scheduler}", 0, in_flight, None,
                         GpuShare(remote=True) if gpu else GpuShare(), settings.clip_memory)
    workers = settings.workers if settings.workers else min(local_cores(), n_tasks)
    local = workers <= 1 or n_tasks <= 2
    workers = 1 if local else workers
    per_worker = clips_per_worker(in_flight, n_tasks, workers)
    budget = ThreadBudget(local_cores() if local else max(1, local_cores() // workers), per_worker)
    memory = settings.clip_memory or machine_memory() // workers // 2 // per_worker
    gpus = plan_gpus(settings.device, workers, False, visible_gpus()) if gpu else GpuShare()
    where = (f"in-process{f', {per_worker} clips in flight' if per_worker > 1 else ''}" if local
             else f"local dask cluster ({workers} worker processes{f', {per_worker} clips in flight each' if per_worker > 1 else ''})")
    return Resources(where, workers, per_worker, budget, gpus, memory)


def _weights(description: dict) -> str:
    weights = description.get("weights", "none")
    return weights.removeprefix("sha256:")[:12] if weights.startswith("sha256:") else weights
