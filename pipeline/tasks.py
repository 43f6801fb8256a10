"""Work done on a worker for one clip: probe, decode once, run every extractor, stage parts.

Extractor instances are built and ``setup`` once per worker process and
reused for every clip that worker handles.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass, field

from mvfx.extractors import create
from mvfx.extractors.base import Extractor, FeatureBlock
from mvfx.media.decode import DecodedClip, decode
from mvfx.media.errors import ClipError, MvfxError, is_unwritable, one_line
from mvfx.media.names import printable
from mvfx.media.probe import ClipInfo, probe
from mvfx.pipeline.corpus import ClipSource
from mvfx.stores import StagedPart, open_store, stage_part

_WORKER_EXTRACTORS: dict[tuple, Extractor] = {}


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
    store: str
    dtypes: tuple[tuple[str, str], ...] = ()  # (extractor, storage dtype); float32 when absent
    device: str = "cpu"
    threads: int = 1


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

    @property
    def status(self) -> str:
        if any(f.extractor == "*" for f in self.failures):
            return "failed"
        return "partial" if self.failures else "ok"


def worker_extractor(spec: ExtractorSpec, device: str, threads: int) -> Extractor:
    """The worker's instance of an extractor, built and set up on first use."""
    key = (spec, device)
    if key not in _WORKER_EXTRACTORS:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        extractor = create(spec.name, **dict(spec.config))
        extractor.setup(device, spec.random_weights)
        _limit_threads(threads)
        _WORKER_EXTRACTORS[key] = extractor
    return _WORKER_EXTRACTORS[key]


def _limit_threads(threads: int) -> None:
    """Give each worker its share of the cores (torch only if an extractor loaded it)."""
    import cv2

    cv2.setNumThreads(threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@dataclass
class Prepared:
    """A clip probed and decoded, waiting for its extractors."""

    task: ClipTask
    result: ClipResult
    info: ClipInfo | None = None
    decoded: DecodedClip | None = None
    started: float = 0.0


def prepare_clip(task: ClipTask) -> Prepared:
    """Probe and decode (the I/O- and FFmpeg-bound half; safe to run in a helper thread)."""
    clip = task.clip
    prepared = Prepared(task, ClipResult(clip.clip_id, {"clip_id": clip.clip_id, "path": printable(clip.path), "status": "failed"}),
                        started=time.perf_counter())
    try:
        prepared.info = probe(clip.path)
    except ClipError as exc:
        prepared.result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))
        return prepared
    prepared.result.record = {"clip_id": clip.clip_id, **prepared.info.as_record(), "path": printable(clip.path)}
    wanted = [(spec, input_of(spec)) for spec in task.extractors]
    present = {"audio": prepared.info.has_audio, "video": prepared.info.has_video}
    try:
        prepared.decoded = decode(
            prepared.info,
            {i for _, (modality, i) in wanted if modality == "audio" and present["audio"]},
            {i for _, (modality, i) in wanted if modality == "video" and present["video"]},
        )
    except ClipError as exc:
        prepared.result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))
        return prepared
    damage = prepared.decoded.damage
    prepared.result.record |= {"damaged_packets": damage.packets, "damaged_spans": damage.describe()}
    return prepared


def finish_clip(prepared: Prepared) -> ClipResult:
    """Run every extractor on a prepared clip (the compute-bound half); never raises for a bad clip."""
    task, result, info = prepared.task, prepared.result, prepared.info
    if info is not None and prepared.decoded is not None:
        extractors = [worker_extractor(s, task.device, task.threads) for s in task.extractors]
        runnable = [e for e in extractors if _has_input(e, info, result)]
        context: dict[str, FeatureBlock] = {}
        for extractor in sorted(runnable, key=lambda e: bool(e.depends_on)):  # dependencies (e.g. shots) first
            block = _extract_one(extractor, prepared.decoded, info, task, result, _context(extractor, context, task, result.clip_id))
            if block is not None:
                context[extractor.name] = block
        result.record["status"] = result.status
    result.seconds = time.perf_counter() - prepared.started
    return result


def process_clip(task: ClipTask) -> ClipResult:
    """Probe, decode once and extract every requested feature of one clip; never raises for a bad clip."""
    return finish_clip(prepare_clip(task))


process_clip.stages = (prepare_clip, finish_clip)  # lets an executor overlap decoding with extraction


@functools.cache
def input_of(spec: ExtractorSpec) -> tuple[str, object]:
    """(modality, input spec) of an extractor, without setting it up."""
    extractor = create(spec.name, **dict(spec.config))
    return extractor.modality, extractor.input


def _has_input(extractor: Extractor, info: ClipInfo, result: ClipResult) -> bool:
    present = info.has_video if extractor.modality == "video" else info.has_audio
    if not present:
        result.failures.append(
            Failure(extractor.name, "input", "MissingStream", f"{info.path}: no {extractor.modality} stream")
        )
    return present


def _context(extractor: Extractor, made: dict, task: ClipTask, clip_id: str) -> dict[str, FeatureBlock]:
    """The rows ``extractor`` depends on: made for this clip in this task, else committed earlier in the store."""
    context = {}
    for name in extractor.depends_on:
        if name in made:
            context[name] = made[name]
            continue
        try:
            context[name] = FeatureBlock(*open_store(task.store).read(name, clip_id))
        except MvfxError:
            pass  # the extractor reports what it misses
    return context


def _extract_one(
    extractor: Extractor, decoded, info: ClipInfo, task: ClipTask, result: ClipResult, context: dict[str, FeatureBlock]
) -> FeatureBlock | None:
    data = decoded.audio.get(extractor.input) if extractor.modality == "audio" else decoded.video.get(extractor.input)
    try:
        block = extractor.extract(data, info, context)
        if block.values.shape[1] != extractor.dim:
            raise ValueError(f"{extractor.name} produced {block.values.shape[1]} columns, declared {extractor.dim}")
        if len(block.values) == 0:
            raise ClipError("extract", f"{info.path}: no {extractor.name} rows (clip too short?)")
    except ClipError as exc:
        result.failures.append(Failure(extractor.name, exc.stage, "ClipError", exc.message))
        return None
    except Exception as exc:  # an extractor bug or odd input must not stop the corpus
        result.failures.append(Failure(extractor.name, "extract", type(exc).__name__, f"{info.path}: {one_line(exc)}"))
        return None
    try:
        result.staged.append(stage_part(
            task.store, extractor.name, result.clip_id, block.values, block.times,
            dict(task.dtypes).get(extractor.name, "float32"), result.record
        ))
    except OSError as exc:  # "store unwritable" stops the run (see run._commit); other errors fail this pair only
        error = "StoreUnwritable" if is_unwritable(exc) else type(exc).__name__
        result.failures.append(Failure(extractor.name, "store", error, f"{task.store}: {one_line(exc)}", errno=exc.errno))
    return block
