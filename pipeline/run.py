"""An extraction run: plan what is missing, run it, commit each clip, summarise.

Resume is the plan itself: a (clip, extractor) pair already committed in the
store is never scheduled again, so re-running a command only does what an
earlier run did not finish (or what failed).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from extractors import create
from extractors.base import Extractor
from pipeline.corpus import ClipSource, discover
from pipeline.errors import MvfxError, one_line
from pipeline.executor import local_cores, make_executor
from pipeline.tasks import ClipResult, ClipTask, ExtractorSpec, Failure, process_clip
from stores import open_writer

CHECKPOINT_EVERY_S = 10.0
COMMON_LIBRARIES = ("mvfx", "numpy", "av", "zarr")


@dataclass
class RunSummary:
    clips: int = 0
    pairs_done: int = 0
    pairs_skipped: int = 0
    clips_failed: int = 0
    pairs_failed: int = 0
    seconds: float = 0.0
    executor: str = ""
    failures: list[tuple[str, Failure]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.pairs_failed == 0 and self.clips_failed == 0


def library_versions(extractor: Extractor) -> dict[str, str]:
    out = {}
    for dist in (*COMMON_LIBRARIES, *extractor.libraries):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def provenance(extractor: Extractor) -> dict:
    return extractor.describe() | extractor.weights_provenance() | {"library_versions": library_versions(extractor)}


def run_extract(
    corpus: str,
    store: str,
    extractor_names: list[str],
    options: dict[str, dict[str, str]] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",  # a resolved device: cpu, cuda or cuda:N
    dtype: str = "float32",
    break_lock: bool = False,
    compact: bool = True,
    random_weights: bool = False,
    on_start: Callable[[int, str], None] | None = None,
    on_result: Callable[[ClipResult], None] | None = None,
) -> RunSummary:
    """Extract ``extractor_names`` for every clip of ``corpus`` that the store lacks."""
    options = options or {}
    store = store.removeprefix("file://")
    if "://" in store:
        raise MvfxError(f"{store}: only local or shared POSIX paths can be written (commits are atomic renames); "
                        "write locally, then `mvfx store export` or copy the finished store")
    started = time.perf_counter()
    clips = discover(corpus)
    extractors = [create(name, **options.get(name, {})) for name in extractor_names]
    for extractor in list(extractors):  # per-shot extractors need shots: run them too unless asked already
        for dependency in extractor.depends_on:
            if dependency not in [e.name for e in extractors]:
                extractors.insert(0, create(dependency, **options.get(dependency, {})))
    for extractor in extractors:
        extractor.random_weights = random_weights and bool(extractor.weight_names)
    described = [provenance(e) for e in extractors]  # fails here, before any work, when weights are missing
    specs = {
        e.name: ExtractorSpec(e.name, tuple(sorted(options.get(e.name, {}).items())), e.random_weights)
        for e in extractors
    }
    summary = RunSummary(clips=len(clips))
    with open_writer(store, break_lock=break_lock) as writer:
        dtypes = {e.name: e.storage_dtype or dtype for e in extractors}
        for description in described:
            writer.register_extractor(description, dtype=dtypes[description["extractor"]])
        done = {e.name: writer.done(e.name) for e in extractors}
        todo: list[tuple[ClipSource, tuple[ExtractorSpec, ...]]] = []
        for clip in _changed_since_extraction(clips, writer, summary):
            missing = tuple(specs[e.name] for e in extractors if clip.clip_id not in done[e.name])
            summary.pairs_skipped += len(extractors) - len(missing)
            if missing:
                todo.append((clip, missing))
        gpu = device != "cpu" and any(e.weight_names for e in extractors)
        executor = make_executor(workers, len(todo), scheduler, resources={"GPU": 1} if gpu and scheduler else None)
        threads = 1 if executor.description != "in-process" else local_cores()
        task_dtypes = tuple(sorted(dtypes.items()))
        tasks = [ClipTask(clip, missing, str(writer.path), task_dtypes, device, threads) for clip, missing in todo]
        summary.executor = executor.description
        if on_start:
            on_start(len(tasks), executor.description)
        last_checkpoint = time.monotonic()
        try:
            for result in executor.map_unordered(process_clip, tasks, on_error=_lost_task):
                _commit(writer, result, summary)
                if on_result:
                    on_result(result)
                if time.monotonic() - last_checkpoint > CHECKPOINT_EVERY_S:
                    writer.checkpoint()
                    last_checkpoint = time.monotonic()
        finally:
            executor.close()
        if compact:
            writer.compact()
    summary.seconds = time.perf_counter() - started
    return summary


def _changed_since_extraction(clips: list[ClipSource], writer, summary: RunSummary) -> list[ClipSource]:
    """Clips safe to plan; a file whose size differs from what the store recorded is reported, not mixed in.

    (A size check costs nothing; hashing a whole corpus on every resume would.)
    """
    records = writer.clip_records()
    keep = []
    for clip in clips:
        recorded = records.get(clip.clip_id, {}).get("size_bytes") or 0
        size = os.path.getsize(clip.path) if os.path.isfile(clip.path) else recorded
        if recorded and size != recorded:
            message = (f"{clip.path}: file changed since it was extracted into this store ({recorded} -> {size} bytes); "
                       "extract into a new store")
            writer.add_failure(clip.clip_id, "*", "plan", "ClipChanged", message)
            summary.failures.append((clip.clip_id, Failure("*", "plan", "ClipChanged", message)))
            summary.clips_failed += 1
        else:
            keep.append(clip)
    return keep


def _lost_task(task: ClipTask, exc: BaseException) -> ClipResult:
    result = ClipResult(task.clip.clip_id, {"clip_id": task.clip.clip_id, "path": task.clip.path, "status": "failed"})
    result.failures.append(Failure("*", "worker", type(exc).__name__, f"{task.clip.path}: worker lost ({one_line(exc)})"))
    return result


def _commit(writer, result: ClipResult, summary: RunSummary) -> None:
    attempted = [s.extractor for s in result.staged] + [f.extractor for f in result.failures if f.extractor != "*"]
    writer.clear_failures(result.clip_id, attempted)
    for staged in result.staged:
        writer.commit(staged)
    for failure in result.failures:
        writer.add_failure(result.clip_id, failure.extractor, failure.stage, failure.error, failure.message)
        summary.failures.append((result.clip_id, failure))
    writer.set_clip(result.record)
    summary.pairs_done += len(result.staged)
    summary.pairs_failed += sum(1 for f in result.failures if f.extractor != "*")
    summary.clips_failed += result.status == "failed"
