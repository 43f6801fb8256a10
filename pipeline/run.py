"""An extraction run: plan what is missing, run it, commit each clip, summarise.

Resume is the plan itself: a (clip, extractor) pair already committed in the
store is never scheduled again, so re-running a command only does what an
earlier run did not finish (or what failed).
"""
from __future__ import annotations

import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from mvfx.extractors import create
from mvfx.extractors.base import Extractor
from mvfx.extractors.simulated_device import is_simulated
from mvfx.extractors.torch_device import on_accelerator, resolve_device
from mvfx.media.errors import MvfxError, StoreUnwritable, is_unwritable, one_line
from mvfx.media.names import printable
from mvfx.pipeline.corpus import ClipSource, discover
from mvfx.pipeline.executor import make_executor
from mvfx.pipeline.gpus import GpuShare, plan_gpus, visible_gpus
from mvfx.pipeline.tasks import ClipResult, ClipTask, ExtractorSpec, Failure, process_clip
from mvfx.pipeline.threads import ThreadBudget
from mvfx.stores import open_writer

COMMON_LIBRARIES = ("mvfx", "numpy", "av", "zarr")
PLAN_REPORT_EVERY = 1000  # clips checked between two on_plan calls


@dataclass
class RunSummary:
    clips: int = 0
    pairs_done: int = 0
    pairs_skipped: int = 0
    clips_failed: int = 0
    pairs_failed: int = 0
    seconds: float = 0.0
    executor: str = ""
    threads: str = ""  # how the cores were shared (ThreadBudget.describe)
    settings: list[str] = field(default_factory=list)  # the workers' process-wide settings and how long they held
    gpus: str = ""  # how the workers shared the GPUs (GpuShare.describe); "" on the CPU
    failures: list[tuple[str, Failure]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # one-line facts the user should see (e.g. a lock taken over)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (clip, the clip with the same content)
    damaged: list[tuple[str, int, str]] = field(default_factory=list)  # (clip, damaged packets skipped, where)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (clip, streams ending early: "audio 6.40-30.00")
    stage_seconds: Counter = field(default_factory=Counter)  # per stage, summed over the clips processed (pipeline.timing)

    @property
    def ok(self) -> bool:
        return self.pairs_failed == 0 and self.clips_failed == 0


def default_clips_in_flight(device: str) -> int:
    """1 on the CPU, where the networks already use every core; 3 per worker on a GPU, so that while one clip
    decodes another's windows are on the device and their forward passes merge (measured: see the README)."""
    return 1 if device == "cpu" else 3


def library_versions(extractor: Extractor) -> dict[str, str]:
    out = {}
    for dist in (*COMMON_LIBRARIES, *extractor.libraries):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def provenance(extractor: Extractor, random_weights: bool, simulated: bool = False) -> dict:
    weights = extractor.weights_provenance(random_weights, simulated)
    return extractor.describe() | weights | {"library_versions": library_versions(extractor)}


def run_extract(
    corpus: str,
    store: str,
    extractor_names: list[str],
    options: dict[str, dict[str, str]] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",  # a resolved device: cpu, cuda, cuda:N, or sim[:...] (a simulated GPU, see docs/gpu.md)
    dtype: str = "float32",
    break_lock: bool = False,
    compact: bool = True,
    random_weights: bool = False,
    clip_memory: int = 0,
    commit_every_s: float = 10.0,
    clips_in_flight: int = 0,
    decode: str = "auto",
    on_start: Callable[[int, str], None] | None = None,
    on_result: Callable[[ClipResult], None] | None = None,
    on_progress: Callable[[str, float, float], None] | None = None,
    on_plan: Callable[[str, int, int | None], None] | None = None,
    executor=None,
) -> RunSummary:
    """Extract ``extractor_names`` for every clip of ``corpus`` that the store lacks.

    ``clip_memory``: bytes of decoded frames one clip may hold (0: half of a worker's memory); a clip that
    would need more is a failures row. Finished clips are committed every ``commit_every_s`` seconds (0: after each).
    ``clips_in_flight``: clips each worker process decodes at once, sharing its models' forward passes (0: automatic,
    see ``default_clips_in_flight``). ``decode``: auto | cpu | cuda (NVDEC where the GPU and codec allow).
    ``on_progress(clip_id, decoded_s, duration_s)`` follows decoding; ``on_plan(stage, done, total)`` follows the
    work before it: "discover" (clips found, total None), then "plan" (clips checked against the store).
    ``executor``: an executor to run on and leave open (the benchmarks keep one warm across runs); by default one
    is made for the run (``make_executor``) and closed after it.
    """
    options = options or {}
    started = time.perf_counter()
    if is_simulated(device):
        device = resolve_device(device)  # its settings, and the queue its workers share
    if scheduler and clips_in_flight:
        raise MvfxError("--clips-in-flight applies to the workers mvfx starts; a cluster's workers run as many clips at "
                        "once as they have threads (start them with `dask worker --nthreads N`)")
    extractors = [create(name, **options.get(name, {})) for name in extractor_names]  # bad options fail before any work
    for extractor in list(extractors):  # per-shot extractors need shots: run them too unless asked already
        for dependency in extractor.depends_on:
            if dependency not in [e.name for e in extractors]:
                extractors.insert(0, create(dependency, **options.get(dependency, {})))
    _check_options_used(options, [e.name for e in extractors])
    simulated = is_simulated(device)  # its networks compute nothing: no weights needed, and none recorded
    random = {e.name: (random_weights or simulated) and bool(e.weight_names) for e in extractors}
    described = [provenance(e, random[e.name], simulated) for e in extractors]  # fails here when weights are missing
    found = discover(corpus, on_found=(lambda n: on_plan("discover", n, None)) if on_plan else None)
    clips = found.clips
    specs = {e.name: ExtractorSpec(e.name, tuple(sorted(options.get(e.name, {}).items())), random[e.name]) for e in extractors}
    summary = RunSummary(clips=len(clips))
    try:
        with open_writer(store, break_lock=break_lock) as writer:
            if writer.lock.took_over:
                summary.notices.append(f"{store}: {writer.lock.took_over}")
            _record_discovery_problems(writer, found.problems, summary)
            dtypes = {e.name: e.storage_dtype or dtype for e in extractors}
            for description in described:
                writer.register_extractor(description, dtype=dtypes[description["extractor"]])
            done = {e.name: writer.done(e.name) for e in extractors}
            todo: list[tuple[ClipSource, tuple[ExtractorSpec, ...]]] = []  # per clip: its source and one shared tuple
            shared: dict[tuple[ExtractorSpec, ...], tuple[ExtractorSpec, ...]] = {}
            for clip in _changed_since_extraction(clips, writer, summary, on_plan):
                missing = tuple(specs[e.name] for e in extractors if clip.clip_id not in done[e.name])
                summary.pairs_skipped += len(extractors) - len(missing)
                if missing:
                    todo.append((clip, shared.setdefault(missing, missing)))
            gpu = device != "cpu" and any(e.weight_names for e in extractors)
            in_flight = clips_in_flight or default_clips_in_flight(device)
            own_executor = executor is None
            if own_executor:
                executor = make_executor(workers, len(todo), scheduler, resources={"GPU": 1} if gpu and scheduler else None,
                                         clips_in_flight=in_flight)
            budget = ThreadBudget(executor.cores_per_worker(), executor.clips_in_flight)
            executor.prepare_workers(budget)
            on_gpu = on_accelerator(device)  # networks or NVDEC
            gpus = plan_gpus(device, executor.workers, bool(scheduler), visible_gpus()) if on_gpu else GpuShare()
            task_dtypes = tuple(sorted(dtypes.items()))
            tasks = (ClipTask(clip, missing, writer.staging(), task_dtypes, device, budget, clip_memory, decode, gpus)
                     for clip, missing in todo)  # made as the executor has room for them, not all at once
            summary.executor = executor.description
            summary.threads = budget.describe()
            summary.gpus = gpus.describe(device, executor.workers) if on_gpu else ""
            if on_start:
                on_start(len(todo), executor.description)
            last_checkpoint = time.monotonic()
            finished = 0
            try:
                for result in executor.map_unordered(process_clip, tasks, on_error=_lost_task, on_progress=on_progress):
                    finished += 1
                    _commit(writer, result, summary)
                    if on_result:
                        on_result(result)
                    if time.monotonic() - last_checkpoint >= commit_every_s:
                        writer.checkpoint()
                        last_checkpoint = time.monotonic()
            except StoreUnwritable as exc:  # the clips not started yet were cancelled (``map_unordered``)
                raise StoreUnwritable(f"{exc} ({len(todo) - finished} of {len(todo)} clips not done)") from None
            finally:
                if own_executor:
                    executor.close()
            if compact:
                writer.compact()
            summary.duplicates = _duplicates(writer.clip_records(), [c.clip_id for c in clips])
    except OSError as exc:
        if is_unwritable(exc):
            raise StoreUnwritable.from_os_error(store, exc) from None
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _check_options_used(options: dict[str, dict[str, str]], running: list[str]) -> None:
    """An option for an extractor that will not run was silently ignored: refuse it, naming it."""
    from mvfx.extractors import names

    for name, fields in options.items():
        option = f"-o {name}.{next(iter(fields))}"
        if name not in names():
            raise MvfxError(f"{option}: no extractor is called {name!r}; see `mvfx extractors`")
        if name not in running:
            raise MvfxError(f"{option}: {name} is not among the extractors of this run ({', '.join(running)}); add it to -e")


def _record_discovery_problems(writer, problems: list[tuple[str, str]], summary: RunSummary) -> None:
    """Entries named like clips that are not readable files: one failures row each (stage "discover")."""
    for clip_id, message in problems:
        failure = Failure("*", "discover", "NotAClip", message)
        writer.add_failure(clip_id, failure.extractor, failure.stage, failure.error, failure.message)
        summary.failures.append((clip_id, failure))
        summary.clips_failed += 1


def _duplicates(records: dict[str, dict], clip_ids: list[str]) -> list[tuple[str, str]]:
    """(clip, first clip with the same content hash) for the corpus's clips: a symlink and its target, or copies."""
    first: dict[str, str] = {}
    pairs = []
    for clip_id in sorted(clip_ids):
        digest = records.get(clip_id, {}).get("content_hash")
        if not digest:
            continue
        if digest in first:
            pairs.append((clip_id, first[digest]))
        else:
            first[digest] = clip_id
    return pairs


def _changed_since_extraction(clips: list[ClipSource], writer, summary: RunSummary,
                              on_plan: Callable[[str, int, int | None], None] | None = None) -> list[ClipSource]:
    """Clips safe to plan; a file whose size differs from what the store recorded is reported, not mixed in.

    (A size check costs one stat, and only for clips the store has a record of; hashing a whole corpus on every
    resume would cost far more.) ``on_plan("plan", checked, total)`` is told every ``PLAN_REPORT_EVERY`` clips.
    """
    records = writer.clip_records()
    keep = []
    for n, clip in enumerate(clips, start=1):
        if on_plan and n % PLAN_REPORT_EVERY == 0:
            on_plan("plan", n, len(clips))
        recorded = records.get(clip.clip_id, {}).get("size_bytes") or 0
        size = _size(clip.path, recorded) if recorded else 0
        if recorded and size != recorded:
            message = (f"{clip.path}: file changed since it was extracted into this store ({recorded} -> {size} bytes); "
                       "extract into a new store")
            writer.add_failure(clip.clip_id, "*", "plan", "ClipChanged", message)
            summary.failures.append((clip.clip_id, Failure("*", "plan", "ClipChanged", message)))
            summary.clips_failed += 1
        else:
            keep.append(clip)
    if on_plan:
        on_plan("plan", len(clips), len(clips))
    return keep


def _size(path: str, otherwise: int) -> int:
    """Bytes of the file at ``path``; ``otherwise`` when it is gone or not a file (its task will say so)."""
    try:
        info = os.stat(path)
    except OSError:
        return otherwise
    return info.st_size if stat.S_ISREG(info.st_mode) else otherwise


def _lost_task(task: ClipTask, exc: BaseException) -> ClipResult:
    result = ClipResult(task.clip.clip_id, {"clip_id": task.clip.clip_id, "path": printable(task.clip.path), "status": "failed"})
    result.failures.append(Failure("*", "worker", type(exc).__name__, f"{task.clip.path}: worker lost ({one_line(exc)})"))
    return result


def _commit(writer, result: ClipResult, summary: RunSummary) -> None:
    unwritable = next((f for f in result.failures if f.error == "StoreUnwritable"), None)
    if unwritable is not None:  # not the clip's fault: commit what was staged, stop; a rerun finishes the clip
        for staged in result.staged:
            writer.commit(staged)
        raise StoreUnwritable.from_os_error(writer.location, OSError(unwritable.errno, os.strerror(unwritable.errno or 0)))
    attempted = [s.extractor for s in result.staged] + [f.extractor for f in result.failures if f.extractor != "*"]
    writer.clear_failures(result.clip_id, attempted)
    for staged in result.staged:
        writer.commit(staged)
    for failure in result.failures:
        writer.add_failure(result.clip_id, failure.extractor, failure.stage, failure.error, failure.message)
        summary.failures.append((result.clip_id, failure))
    writer.set_clip(result.record)
    summary.notices += [n for n in result.notices if n not in summary.notices]
    if result.settings and result.settings not in summary.settings:
        summary.settings.append(result.settings)
    summary.stage_seconds.update(result.stage_seconds)
    if result.record.get("missing_spans"):
        summary.missing.append((result.clip_id, result.record["missing_spans"]))
    if result.record.get("damaged_packets"):
        summary.damaged.append((result.clip_id, result.record["damaged_packets"], result.record["damaged_spans"]))
    summary.pairs_done += len(result.staged)
    summary.pairs_failed += sum(1 for f in result.failures if f.extractor != "*")
    summary.clips_failed += result.status == "failed"
