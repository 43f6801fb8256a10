"""Work done on a worker for one clip: probe, stream the decoded clip through every extractor, stage parts.

Extractor instances are built and ``setup`` once per worker process and
reused for every clip that worker handles, also by the clips it has in
flight at once (threads), whose forward passes they then share.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mvfx.extractors import create
from mvfx.extractors.base import Extractor, FeatureBlock
from mvfx.extractors.torch_device import on_accelerator
from mvfx.media.errors import ClipError, MvfxError, is_unwritable, one_line
from mvfx.media.hwdecode import choose_decoder
from mvfx.media.names import printable
from mvfx.media.probe import ClipInfo, probe
from mvfx.pipeline.corpus import ClipSource
from mvfx.pipeline.executor import clip_place, dask_worker, machine_memory
from mvfx.pipeline.gpus import GpuShare, local_rank, use_device
from mvfx.pipeline.streaming import PassOutcome, memory_needed, stream_pass
from mvfx.pipeline.threads import ThreadBudget, describe_settings, limit_new_libraries, threads_limited
from mvfx.pipeline.timing import PROBE, SETUP, STORING, timing
from mvfx.stores import StagedPart, Staging

_WORKER_EXTRACTORS: dict[tuple, Extractor] = {}
_BUILDING = threading.Lock()  # clips in flight ask for the same extractors at once: build each one once


@dataclass(frozen=True)
class ExtractorSpec:
    """What a worker needs to rebuild an extractor: its name and configuration."""

    name: str
    config: tuple[tuple[str, object], ...] = ()
    random_weights: bool = False


@dataclass(frozen=True)
class ClipTask:
    clip: ClipSource
    extractors: tuple[ExtractorSpec, ...]
    staging: Staging  # where finished blocks go (``writer.staging()``: a local folder or an Icechunk fork)
    dtypes: tuple[tuple[str, str], ...] = ()  # (extractor, storage dtype); float32 when absent
    device: str = "cpu"
    budget: ThreadBudget = field(default_factory=lambda: ThreadBudget(per_worker=1))
    clip_memory: int = 0  # bytes of frames one clip may hold; 0: half the worker's (or machine's) memory, per clip in flight
    decode: str = "auto"  # auto | cpu | cuda (NVDEC), see media.hwdecode
    gpus: GpuShare = field(default_factory=GpuShare)  # which GPU each worker takes, and how many workers share one


@dataclass
class Failure:
    extractor: str  # "*" when the whole clip failed
    stage: str
    error: str
    message: str  # one line; names that are not UTF-8 are shown as %XX
    errno: int | None = None  # for store errors: which OSError it was

    def __post_init__(self) -> None:
        self.message = printable(self.message)


@dataclass
class ClipResult:
    clip_id: str
    record: dict
    staged: list[StagedPart] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)  # one-line facts for the run summary (e.g. NVDEC fell back to the CPU)
    stage_seconds: Counter = field(default_factory=Counter)  # where the clip's time went (pipeline.timing)
    settings: str = ""  # the worker's process-wide settings, in words (pipeline.threads.describe_settings)

    @property
    def status(self) -> str:
        if any(f.extractor == "*" for f in self.failures):
            return "failed"
        return "partial" if self.failures else "ok"


def worker_extractor(spec: ExtractorSpec, task: ClipTask, device: str) -> Extractor:
    """The worker's instance of an extractor on ``device``, built and set up on first use, with the worker's thread budget."""
    key = (spec, device, task.gpus.workers_per_gpu)  # the workers sharing its GPU set its batch sizes
    with _BUILDING:
        if key not in _WORKER_EXTRACTORS:
            use_device(device)
            extractor = create(spec.name, **dict(spec.config))
            extractor.gpu_workers = task.gpus.workers_per_gpu
            extractor.setup(device, spec.random_weights)
            limit_new_libraries(task.budget)  # after setup: torch may have been imported by it
            _WORKER_EXTRACTORS[key] = extractor
        extractor = _WORKER_EXTRACTORS[key]
        if clips_in_flight_here(task) > 1 and not extractor.sharing:  # also when an earlier run here had one clip at a time
            extractor.share_forward_passes()
    return extractor


def clips_in_flight_here(task: ClipTask) -> int:
    """Clips this worker runs at once: a Dask worker's own thread count (on a remote cluster workers may differ, and
    may join after the run was planned), else the run's figure (in-process)."""
    worker = dask_worker()
    return worker.state.nthreads if worker is not None else task.budget.clips_in_flight


def process_clip(task: ClipTask, on_progress: Callable[[str, float, float], None] | None = None) -> ClipResult:
    """Probe, then stream the clip once through every requested extractor; never raises for a bad clip.

    Extractors that need another's finished rows before their first frame (per-shot I3D when ``shots``
    is made in the same task) run in a second pass over the clip, with those rows.
    ``on_progress(clip_id, decoded_s, duration_s)`` is called while decoding.
    """
    clip = task.clip
    result = ClipResult(clip.clip_id, {"clip_id": clip.clip_id, "path": printable(clip.path), "status": "failed"})
    with clip_place() as extracted, threads_limited(task.budget):
        started = time.perf_counter()  # not counting the wait for a place
        _process(task, result, on_progress, extracted)
    result.settings = describe_settings()
    result.seconds = time.perf_counter() - started
    return result


def _process(task: ClipTask, result: ClipResult, on_progress: Callable[[str, float, float], None] | None,
             extracted: Callable[[], None]) -> None:
    """``process_clip``'s work, filling ``result``; ``extracted()`` once the clip's extractors are done, before its
    last blocks are stored."""
    clip, times = task.clip, result.stage_seconds
    try:
        with timing(times, PROBE):
            info = probe(clip.path)
        result.record = {"clip_id": clip.clip_id, **info.as_record(), "path": printable(clip.path)}
        device = task.gpus.device_for(task.device, local_rank())  # this worker's GPU on a node with several
        with timing(times, SETUP):
            extractors = [worker_extractor(s, task, device) for s in task.extractors]
        runnable = [e for e in extractors if _has_input(e, info, result)]
        _check_memory(info, runnable, task, device)
        made: dict[str, FeatureBlock] = {}
        backend = choose_decoder(task.decode, device, info.video_codec if any(e.modality == "video" for e in runnable) else None)
        progress = (lambda done, total: on_progress(clip.clip_id, done, total)) if on_progress else None
        passes = _passes(runnable)
        for number, group in enumerate(passes):
            context = _dependencies(group, made, task, clip.clip_id)
            outcome = stream_pass(info, group, context, on_progress=progress, backend=backend,
                                  decoder_threads=task.budget.per_decoder, times=times, lanes=on_accelerator(device))
            result.notices += outcome.notices
            if number == 0:
                damage = outcome.damage
                result.record |= {"damaged_packets": damage.packets, "damaged_spans": damage.describe(),
                                  "missing_spans": outcome.missing_spans}
            accepted = [(e, block) for e in group if (block := _accepted(e, outcome, info, result)) is not None]
            made |= {e.name: block for e, block in accepted}
            if number == len(passes) - 1:
                extracted()
            for e, block in accepted:
                with timing(times, STORING):
                    _stage(e, block, task, result)
        result.record["status"] = result.status
    except ClipError as exc:
        result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))


def _passes(extractors: list[Extractor]) -> list[list[Extractor]]:
    """Extractors that can stream together; those needing a finished dependency made here come after it."""
    made_here = {e.name for e in extractors}
    later = [e for e in extractors if e.depends_on_whole and set(e.depends_on) & made_here]
    first = [e for e in extractors if e not in later]
    return [group for group in (first, later) if group]


def _check_memory(info: ClipInfo, extractors: list[Extractor], task: ClipTask, device: str) -> None:
    budget = task.clip_memory or default_clip_memory() // clips_in_flight_here(task)
    needed, worst = memory_needed(info, extractors, decoder_threads=task.budget.per_decoder, lanes=on_accelerator(device))
    if needed > budget:
        raise ClipError("memory", f"{info.path}: needs about {needed / 2**30:.1f} GiB at {info.width}x{info.height} "
                                  f"({worst}), over the {budget / 2**30:.1f} GiB a clip may use (--clip-memory)")


def default_clip_memory() -> int:
    """Half of this Dask worker's memory limit, else half of the machine's memory."""
    limit = getattr(getattr(dask_worker(), "memory_manager", None), "memory_limit", None)
    return int((limit or machine_memory()) // 2)


def _has_input(extractor: Extractor, info: ClipInfo, result: ClipResult) -> bool:
    present = info.has_video if extractor.modality == "video" else info.has_audio
    if not present:
        result.failures.append(
            Failure(extractor.name, "input", "MissingStream", f"{info.path}: no {extractor.modality} stream")
        )
    return present


def _dependencies(group: list[Extractor], made: dict[str, FeatureBlock], task: ClipTask, clip_id: str) -> dict[str, FeatureBlock]:
    """The finished rows ``group`` depends on: made for this clip in this task, else committed earlier in the store."""
    context = {}
    for name in {d for e in group for d in e.depends_on}:
        block = made[name] if name in made else _stored(task, name, clip_id)
        if block is not None:
            context[name] = block
    return context


def _stored(task: ClipTask, name: str, clip_id: str) -> FeatureBlock | None:
    """A dependency's rows committed to the store by an earlier run, if any (the extractor reports what it misses)."""
    try:
        return FeatureBlock(*task.staging.reader().read(name, clip_id))
    except MvfxError:
        return None


def _accepted(extractor: Extractor, outcome: PassOutcome, info: ClipInfo, result: ClipResult) -> FeatureBlock | None:
    """The extractor's block if it is sound, else a failure row (an extractor bug or odd input must not stop the corpus)."""
    try:
        if extractor.name in outcome.errors:
            raise outcome.errors[extractor.name]
        block = outcome.blocks[extractor.name]
        if block.values.shape[1] != extractor.dim:
            raise ValueError(f"{extractor.name} produced {block.values.shape[1]} columns, declared {extractor.dim}")
        if len(block.values) == 0 and not extractor.empty_allowed:
            raise ClipError("extract", f"{info.path}: no {extractor.name} rows (clip too short?)")
        return block
    except ClipError as exc:
        result.failures.append(Failure(extractor.name, exc.stage, "ClipError", exc.message))
    except Exception as exc:
        result.failures.append(Failure(extractor.name, "extract", type(exc).__name__, f"{info.path}: {one_line(exc)}"))
    return None


def _stage(extractor: Extractor, block: FeatureBlock, task: ClipTask, result: ClipResult) -> None:
    try:
        result.staged.append(task.staging.stage(
            extractor.name, result.clip_id, block.values, block.times, dict(task.dtypes).get(extractor.name, "float32"), result.record
        ))
    except OSError as exc:  # "store unwritable" stops the run (see run._commit); other errors fail this pair only
        error = "StoreUnwritable" if is_unwritable(exc) else type(exc).__name__
        result.failures.append(Failure(extractor.name, "store", error, f"{task.staging}: {one_line(exc)}", errno=exc.errno))
