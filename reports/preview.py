"""A look at a clip's source file, where it is still reachable: a few frames and the audio's waveform.

The clips table already says what the file held (``media.probe.ClipInfo``'s fields), so the file is not probed
again (probing hashes the whole file); a record without a duration (imported features) is probed. Frames are
picked by seeking to each instant, not by decoding the whole video, so a two-hour concert costs the same few
decodes as a 10-second clip; the audio goes through ``media.decode`` at a low rate (4 kHz mono is plenty for
an envelope: 115 MB for two hours).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import av
import numpy as np

from mvfx.media.decode import AudioSpec, VideoSpec, decode
from mvfx.media.errors import MvfxError
from mvfx.media.probe import ClipInfo, probe, video_stream

THUMBNAILS = 6
THUMB_SHORT_SIDE = 96
WAVEFORM_RATE = 4000


@dataclass
class Preview:
    images: list[np.ndarray] = field(default_factory=list)
    instants: list[float] = field(default_factory=list)
    audio: np.ndarray | None = None
    sample_rate: int = WAVEFORM_RATE
    notes: list[str] = field(default_factory=list)


def _number(value, default=0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def clip_info(record: dict) -> ClipInfo:
    """The ClipInfo a clips-table record describes (probing the file only when the record lacks a duration)."""
    path = str(record.get("path") or "")
    if _number(record.get("duration_s")) <= 0:
        return probe(path)
    return ClipInfo(
        path=path,
        size_bytes=int(_number(record.get("size_bytes"))),
        content_hash=str(record.get("content_hash") or ""),
        duration_s=_number(record.get("duration_s")),
        has_video=bool(record.get("has_video")),
        has_audio=bool(record.get("has_audio")),
        fps=_number(record.get("fps")),
        width=int(_number(record.get("width"))),
        height=int(_number(record.get("height"))),
        video_codec=str(record.get("video_codec") or ""),
        sample_rate=int(_number(record.get("sample_rate"))),
        channels=int(_number(record.get("channels"))),
        audio_codec=str(record.get("audio_codec") or ""),
    )


def preview(record: dict, thumbnails: int = THUMBNAILS) -> Preview:
    """Frames and audio of the clip's file; a note (and nothing else) when the file is gone or unreadable."""
    result = Preview()
    path = str(record.get("path") or "")
    if not path:
        result.notes.append("the store records no source file for this clip")
        return result
    if not os.path.isfile(path):
        result.notes.append(f"the source file is no longer at {path}: no frames or waveform")
        return result
    try:
        info = clip_info(record)
    except MvfxError as exc:
        result.notes.append(f"the source file cannot be read now ({exc})")
        return result
    size = os.path.getsize(path)
    if info.size_bytes and size != info.size_bytes:
        result.notes.append(f"the file at {path} has changed since extraction ({size} bytes, was {info.size_bytes}): "
                            "frames and waveform are of the file as it is now")
    if info.has_video and thumbnails > 0:
        result.images, result.instants = _frames(info, thumbnails, result.notes)
    if info.has_audio:
        try:
            decoded = decode(info, {AudioSpec(WAVEFORM_RATE)})
            samples = decoded.audio.get(AudioSpec(WAVEFORM_RATE))
            if samples is not None and len(samples):
                result.audio = samples
            else:
                result.notes.append("no audio could be decoded for the waveform")
        except MvfxError as exc:
            result.notes.append(f"audio not decodable for the waveform ({exc})")
    return result


def _frames(info: ClipInfo, n: int, notes: list[str]) -> tuple[list[np.ndarray], list[float]]:
    """The frame shown at the centre of each of ``n`` equal spans of the clip, by seeking (as a player does)."""
    instants = [(k + 0.5) * info.duration_s / n for k in range(n)]
    width, height = VideoSpec(n_frames=n, short_side=THUMB_SHORT_SIDE).output_size(max(info.width, 1), max(info.height, 1))
    images, taken = [], []
    try:
        container = av.open(info.path)
    except av.FFmpegError as exc:
        notes.append(f"video not readable for frames ({exc.strerror or exc})")
        return images, taken
    with container:
        stream = video_stream(container)
        if stream is None:
            return images, taken
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        missed = []
        for t in instants:
            frame = _frame_at(container, stream, start, t)
            if frame is None:
                missed.append(t)
                continue
            images.append(frame.reformat(width=width, height=height, format="rgb24").to_ndarray())
            taken.append(t)
    if missed:
        notes.append("no frame could be decoded at " + ", ".join(f"{t:.1f} s" for t in missed))
    return images, taken


def _frame_at(container, stream, start: float, t: float):
    """The first frame at or after ``t`` seconds (the last one before the end when the stream stops short)."""
    last = None
    try:
        container.seek(int((start + t) / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            last = frame
            if frame.time is None or frame.time - start >= t - 1e-3:
                return frame
    except (av.FFmpegError, ValueError, OverflowError):
        return last
    return last
