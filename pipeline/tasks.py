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

from extractors import create
from extractors.base import Extractor, FeatureBlock
from pipeline.corpus import ClipSource
from pipeline.decode import DecodedClip, decode
from pipeline.errors import ClipError, MvfxError, one_line
from pipeline.probe import ClipInfo, probe
from stores import open_store
from stores.zarr_store import StagedPart, stage_part

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
    message: str


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
        extractor.random_weights = spec.random_weights
        extractor.setup(device)
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
    prepared = Prepared(task, ClipResult(clip.clip_id, {"clip_id": clip.clip_id, "path": clip.path, "status": "failed"}),
                        started=time.perf_counter())
    try:
        prepared.info = probe(clip.path)
    except ClipError as exc:
        prepared.result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))
        return prepared
    prepared.result.record = {"clip_id": clip.clip_id, **prepared.info.as_record()}
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


@functools.lru_cache(maxsize=None)
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


def _context(extractor: Extractor, made: dict, task: ClipTask, clip_id: str) -> dict | None:
    """The rows ``extractor`` depends on: made for this clip in this task, else committed earlier in the store."""
    if not extractor.depends_on:
        return None
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
    extractor: Extractor, decoded, info: ClipInfo, task: ClipTask, result: ClipResult, context: dict | None
) -> FeatureBlock | None:
    data = decoded.audio.get(extractor.input) if extractor.modality == "audio" else decoded.video.get(extractor.input)
    try:
        block = extractor.extract(data, info, context) if extractor.depends_on else extractor.extract(data, info)
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
    except OSError as exc:
        result.failures.append(Failure(extractor.name, "store", type(exc).__name__, f"{task.store}: {one_line(exc)}"))
    return block
