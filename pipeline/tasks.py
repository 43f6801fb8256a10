"""Work done on a worker for one clip: probe, decode once, run every extractor, stage parts.

Extractor instances are built and ``setup`` once per worker process and
reused for every clip that worker handles.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from extractors import create
from extractors.base import Extractor
from pipeline.corpus import ClipSource
from pipeline.decode import decode
from pipeline.errors import ClipError, one_line
from pipeline.probe import ClipInfo, probe
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
    dtype: str = "float32"
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


def process_clip(task: ClipTask) -> ClipResult:
    """Probe, decode once and extract every requested feature of one clip; never raises for a bad clip."""
    start = time.perf_counter()
    clip = task.clip
    result = ClipResult(clip.clip_id, {"clip_id": clip.clip_id, "path": clip.path, "status": "failed"})
    try:
        info = probe(clip.path)
    except ClipError as exc:
        result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))
        result.seconds = time.perf_counter() - start
        return result
    result.record = {"clip_id": clip.clip_id, **info.as_record()}
    extractors = [worker_extractor(s, task.device, task.threads) for s in task.extractors]
    runnable = [e for e in extractors if _has_input(e, info, result)]
    try:
        decoded = decode(info, {e.input for e in runnable if e.modality == "audio"}, {e.input for e in runnable if e.modality == "video"})
    except ClipError as exc:
        result.failures.append(Failure("*", exc.stage, "ClipError", exc.message))
        runnable = []
    for extractor in runnable:
        _extract_one(extractor, decoded, info, task, result)
    result.record["status"] = result.status
    result.seconds = time.perf_counter() - start
    return result


def _has_input(extractor: Extractor, info: ClipInfo, result: ClipResult) -> bool:
    present = info.has_video if extractor.modality == "video" else info.has_audio
    if not present:
        result.failures.append(
            Failure(extractor.name, "input", "MissingStream", f"{info.path}: no {extractor.modality} stream")
        )
    return present


def _extract_one(extractor: Extractor, decoded, info: ClipInfo, task: ClipTask, result: ClipResult) -> None:
    data = decoded.audio.get(extractor.input) if extractor.modality == "audio" else decoded.video.get(extractor.input)
    try:
        block = extractor.extract(data, info)
        if block.values.shape[1] != extractor.dim:
            raise ValueError(f"{extractor.name} produced {block.values.shape[1]} columns, declared {extractor.dim}")
        if len(block.values) == 0:
            raise ClipError("extract", f"{info.path}: no {extractor.name} rows (clip too short?)")
    except ClipError as exc:
        result.failures.append(Failure(extractor.name, exc.stage, "ClipError", exc.message))
        return
    except Exception as exc:  # an extractor bug or odd input must not stop the corpus
        result.failures.append(Failure(extractor.name, "extract", type(exc).__name__, f"{info.path}: {one_line(exc)}"))
        return
    try:
        result.staged.append(stage_part(
            task.store, extractor.name, result.clip_id, block.values, block.times, task.dtype, result.record
        ))
    except OSError as exc:
        result.failures.append(Failure(extractor.name, "store", type(exc).__name__, f"{task.store}: {one_line(exc)}"))
