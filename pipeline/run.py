"""An extraction run carried out: ``execute(plan, observer)`` runs a ``RunPlan`` (``pipeline.plan``), commits each
clip as it completes, and returns a ``RunSummary``. ``run_extract`` is the same in one call, for its callers.

Progress reaches the caller through a ``RunObserver`` (the command's progress bars; nothing by default).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

from mvfx.extractors.torch_device import on_accelerator
from mvfx.media.errors import StoreUnwritable, is_unwritable, one_line
from mvfx.media.names import printable
from mvfx.pipeline.gpus import GpuShare, plan_gpus, visible_gpus
from mvfx.pipeline.plan import RunPlan, RunSettings, plan
from mvfx.pipeline.tasks import ClipResult, ClipTask, Failure, process_clip
from mvfx.pipeline.threads import ThreadBudget
from mvfx.stores import open_writer


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


class RunObserver:
    """What a caller hears of a run; every method does nothing unless overridden (the command draws progress bars)."""

    def planning(self, stage: str, done: int, total: int | None) -> None:
        """Before the run: "discover" (clips found so far, total None), then "plan" (clips checked against the store)."""

    def started(self, n_tasks: int, where: str) -> None:
        """``n_tasks`` clips are about to run on ``where`` (the executor, in words)."""

    def decoding(self, clip_id: str, decoded_s: float, duration_s: float) -> None:
        """A clip's decoding progress (from the workers)."""

    def finished(self, result: ClipResult) -> None:
        """A clip's result has been committed."""


QUIET = RunObserver()


def run_extract(
    corpus: str,
    store: str,
    extractor_names: list[str],
    options: dict[str, dict[str, str]] | None = None,
    observer: RunObserver = QUIET,
    executor=None,
    **settings,
) -> RunSummary:
    """Extract ``extractor_names`` for every clip of ``corpus`` that ``store`` lacks: ``plan`` then ``execute``.

    ``settings`` are ``RunSettings``' fields (workers, scheduler, device, dtype, break_lock, compact,
    random_weights, clip_memory, commit_every_s, clips_in_flight, decode). ``executor``: one to run on and leave
    open (the benchmarks keep one warm across runs); by default the plan's is started and closed after the run.
    """
    run = RunSettings(corpus, store, tuple(extractor_names), options or {}, **settings)
    return execute(plan(run), observer, executor)


def execute(planned: RunPlan, observer: RunObserver = QUIET, executor=None) -> RunSummary:
    """Carry out ``planned``: take the store's writer, plan again against it (under its lock: what another run
    committed meanwhile is not redone), run the clips, commit each as it completes, compact, summarise."""
    settings, started = planned.settings, time.perf_counter()
    summary = RunSummary(clips=len(planned.found.clips))
    try:
        with open_writer(settings.store, break_lock=settings.break_lock) as writer:
            if writer.lock.took_over:
                summary.notices.append(f"{settings.store}: {writer.lock.took_over}")
            _record_failures(writer, [(c, Failure("*", "discover", "NotAClip", m)) for c, m in planned.found.problems], summary)
            for description in planned.descriptions:
                writer.register_extractor(description, dtype=planned.dtypes[description["extractor"]])
            current = planned.against(writer, observer.planning)
            _record_failures(writer, [(c, Failure("*", "plan", "ClipChanged", m)) for c, m in current.changed], summary)
            summary.pairs_skipped = current.skipped
            own_executor = executor is None
            if own_executor:
                executor = current.resources.start(settings, gpu_resource=current.gpu and bool(settings.scheduler))
            try:
                _run_clips(current, executor, writer, summary, observer)
            finally:
                if own_executor:
                    executor.close()
            if settings.compact:
                writer.compact()
            summary.duplicates = _duplicates(writer.clip_records(), [c.clip_id for c in planned.found.clips])
    except OSError as exc:
        if is_unwritable(exc):
            raise StoreUnwritable.from_os_error(settings.store, exc) from None
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _run_clips(planned: RunPlan, executor, writer, summary: RunSummary, observer: RunObserver) -> None:
    """The plan's clips through ``executor``, each result committed as it comes (checkpoints every ``commit_every_s``)."""
    settings = planned.settings
    budget = ThreadBudget(executor.cores_per_worker(), executor.clips_in_flight)  # the plan's forecast, now known
    executor.prepare_workers(budget)
    on_gpu = on_accelerator(settings.device)  # networks or NVDEC
    gpus = plan_gpus(settings.device, executor.workers, bool(settings.scheduler), visible_gpus()) if on_gpu else GpuShare()
    staging, dtypes = writer.staging(), tuple(sorted(planned.dtypes.items()))
    tasks = (ClipTask(clip, missing, staging, dtypes, settings.device, budget, settings.clip_memory, settings.decode, gpus)
             for clip, missing in planned.todo)  # made as the executor has room for them, not all at once
    summary.executor, summary.threads = executor.description, budget.describe()
    summary.gpus = gpus.describe(settings.device, executor.workers) if on_gpu else ""
    observer.started(len(planned.todo), executor.description)
    last_checkpoint, finished = time.monotonic(), 0
    try:
        for result in executor.map_unordered(process_clip, tasks, on_error=_lost_task, on_progress=observer.decoding):
            finished += 1
            _commit(writer, result, summary)
            observer.finished(result)
            if time.monotonic() - last_checkpoint >= settings.commit_every_s:
                writer.checkpoint()
                last_checkpoint = time.monotonic()
    except StoreUnwritable as exc:  # the clips not started yet were cancelled (``map_unordered``)
        raise StoreUnwritable(f"{exc} ({len(planned.todo) - finished} of {len(planned.todo)} clips not done)") from None


def _record_failures(writer, failures: list[tuple[str, Failure]], summary: RunSummary) -> None:
    """Whole-clip failures found before any clip ran (not a clip; changed since extracted): one failures row each."""
    for clip_id, failure in failures:
        writer.add_failure(clip_id, failure.extractor, failure.stage, failure.error, failure.message)
        summary.failures.append((clip_id, failure))
        summary.clips_failed += 1


def _duplicates(records, clip_ids: list[str]) -> list[tuple[str, str]]:
    """(clip, first clip with the same content hash) for the corpus's clips: a symlink and its target, or copies."""
    first: dict[str, str] = {}
    pairs = []
    for clip_id in sorted(clip_ids):
        digest = (records.get(clip_id) or {}).get("content_hash")
        if not digest:
            continue
        if digest in first:
            pairs.append((clip_id, first[digest]))
        else:
            first[digest] = clip_id
    return pairs


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
