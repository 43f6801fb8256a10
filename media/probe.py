"""Probe a media file with PyAV: streams, duration, rate, size, content hash.

A cover-art picture (an MJPEG stream flagged ``attached_pic``, common in music
files) is not a video stream: such a file is audio-only.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import av
from av.stream import Disposition

from mvfx.media.errors import ClipError
from mvfx.media.hashing import file_sha256


@dataclass(frozen=True)
class ClipInfo:
    """What the store's ``clips`` table records about one source file."""

    path: str
    size_bytes: int
    content_hash: str
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float = 0.0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    sample_rate: int = 0
    channels: int = 0
    audio_codec: str = ""

    def as_record(self) -> dict:
        return asdict(self)


def content_hash(path: str) -> str:
    """sha256 of the file's bytes: the identity of a clip's content."""
    return "sha256:" + file_sha256(path)


def video_stream(container: av.container.InputContainer):
    """The first real video stream (not cover art), or None."""
    for s in container.streams.video:
        if not s.disposition & Disposition.attached_pic:
            return s
    return None


def audio_stream(container: av.container.InputContainer):
    return container.streams.audio[0] if container.streams.audio else None


def probe(path: str) -> ClipInfo:
    """Describe ``path``; raise ClipError with a one-line reason when it is not usable media."""
    if not os.path.isfile(path):
        raise ClipError("probe", f"{path}: file not found")
    size = os.path.getsize(path)
    if size == 0:
        raise ClipError("probe", f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except av.FFmpegError as exc:
        raise ClipError("probe", f"{path}: not a readable media file ({exc.strerror or exc})") from None
    with container:
        v, a = video_stream(container), audio_stream(container)
        if v is None and a is None:
            raise ClipError("probe", f"{path}: no audio or video stream")
        duration = _duration(container, v, a)
        if duration <= 0:
            raise ClipError("probe", f"{path}: zero or unknown duration")
        info = ClipInfo(
            path=path,
            size_bytes=size,
            content_hash=content_hash(path),
            duration_s=duration,
            has_video=v is not None,
            has_audio=a is not None,
            fps=float(v.average_rate or v.guessed_rate or 0) if v else 0.0,
            width=v.codec_context.width if v else 0,
            height=v.codec_context.height if v else 0,
            video_codec=v.codec_context.name if v else "",
            sample_rate=a.codec_context.sample_rate if a else 0,
            channels=a.codec_context.channels if a else 0,
            audio_codec=a.codec_context.name if a else "",
        )
    if info.has_video and (info.width <= 0 or info.height <= 0):
        raise ClipError("probe", f"{path}: video stream has no frame size")
    return info


def _duration(container, v, a) -> float:
    """Longest known stream duration in seconds, falling back to the container's."""
    durations = [
        float(s.duration * s.time_base) for s in (v, a) if s is not None and s.duration is not None
    ]
    if durations:
        return max(durations)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0
