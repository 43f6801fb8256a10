"""The naive way a researcher writes extraction: for each extractor, for each clip, load the clip whole, extract, save .npy.

Every extractor script calls the same ``load_clip``: all video frames with
OpenCV (then the extractor's grid is picked out) and the audio with PyAV
(OpenCV has none), so each extractor decodes the clip again, as the issue
describes. The extractors themselves are mvfx's, so the comparison
measures the plumbing: repeated decoding and no overlap of decode and compute.
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

import mvfx.extractors as extractors
from mvfx.media.decode import Frames, VideoSpec, target_times
from mvfx.media.probe import probe


def _video(path: str, spec, duration: float) -> Frames:
    """Read every frame with OpenCV, keep the ones on the extractor's grid."""
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    spans = target_times(spec, duration)
    wanted = {min(int(start * fps), int(duration * fps) - 1): k for k, (start, _) in enumerate(spans)}
    picked, index = {}, 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index in wanted:
            h, w = bgr.shape[:2]
            scale = spec.short_side / min(h, w)
            small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            picked[wanted[index]] = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        index += 1
    capture.release()
    order = sorted(picked)
    return Frames(np.stack([picked[k] for k in order]), spans[order])


def _audio(path: str, rate: int) -> np.ndarray:
    with av.open(path) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [f.to_ndarray()[0] for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(chunks)


def load_clip(path: str, extractor) -> tuple:
    """Decode the whole clip: every video frame (OpenCV) and the audio (PyAV); return what the extractor eats."""
    info = probe(path)
    frames = _video(path, extractor.input if extractor.modality == "video" else VideoSpec(fps=2.0, short_side=144), info.duration_s)
    audio = _audio(path, extractor.input.sample_rate if extractor.modality == "audio" else 16000)
    return info, (frames if extractor.modality == "video" else audio)


def run_naive(clips: list[str], names: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        extractor = extractors.create(name)
        extractor.setup("cpu", random_weights=True)
        for path in clips:
            info, data = load_clip(path, extractor)
            block = extractor.extract(data, info, {})
            np.save(out / f"{Path(path).stem}.{name}.npy", block.values)
