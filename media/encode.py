"""Encode frames and audio into an MP4 (H.264 + AAC) with PyAV: test media, demo and benchmark corpora."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

DEFAULT_SAMPLE_RATE = 44100
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray] | None,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> None:
    """Encode RGB uint8 frames (H.264, yuv420p) and/or audio [channels, samples] in [-1, 1] (AAC; 1, 2 or 6
    channels) to an MP4."""
    container = av.open(str(path), mode="w")
    vstream = None
    if frames is not None:
        vstream = container.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        vstream.pix_fmt = "yuv420p"
    astream = None
    if audio is not None:
        layout = LAYOUTS[audio.shape[0]]
        astream = container.add_stream("aac", rate=sample_rate, layout=layout)
    for n, rgb in enumerate(frames or ()):
        if n == 0:
            vstream.height, vstream.width = rgb.shape[:2]
        for packet in vstream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            container.mux(packet)
    if astream is not None:
        samples = np.asarray(audio, np.float32)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sample_rate, start
            for packet in astream.encode(frame):
                container.mux(packet)
    for stream in (vstream, astream):
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    container.close()
