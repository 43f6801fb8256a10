"""Helpers shared by the test modules (tests/ is on sys.path under pytest, so: ``from helpers import ...``)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import av
import numpy as np
from click.testing import CliRunner, Result

import mvfx.extractors as extractors
from mvfx.media.decode import Frames
from mvfx.media.encode import write_mp4
from mvfx.pipeline.run import RunObserver

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_EXTRACTORS = ["colour", "emobase", "logmel_phase"]
# For the few tests where a separate process is the point (a kill, a real cluster, import isolation).
MVFX = [sys.executable, "-m", "mvfx.cli"]
# The start of a script run in a fresh interpreter whose every network connection fails and is counted in ``attempts``.
NO_NETWORK = r"""
import socket
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:1])
    raise OSError("network blocked by the test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse
"""


def timed(images: np.ndarray, fps: float = 2.0) -> Frames:
    """Frames with back-to-back spans of 1/fps seconds."""
    n = len(images)
    return Frames(np.asarray(images), np.stack([np.arange(n) / fps, np.arange(1, n + 1) / fps], axis=1))


def solid_frames(*rgb: tuple[int, int, int], size: tuple[int, int] = (24, 32)) -> Frames:
    """One frame of each colour, 2 fps."""
    return timed(np.stack([np.full((*size, 3), c, np.uint8) for c in rgb]))


def random_frames(n: int, h: int, w: int, fps: float, seed: int = 0) -> Frames:
    return timed(np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8), fps)


def random_extractor(name: str, **config) -> extractors.Extractor:
    """An extractor set up on the CPU with its seeded random weights."""
    extractor = extractors.create(name, **config)
    extractor.setup("cpu", random_weights=True)
    return extractor


def run_cli(*args: object) -> Result:
    """``mvfx ARGS`` in this process (click's runner): exit code, stdout and stderr kept apart."""
    from mvfx.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def indexed_video(path: Path, n_frames: int, fps: int, size=(64, 48)) -> None:
    """A video whose frame i has grey level 8*i (to identify which frames were sampled)."""
    w, h = size
    write_mp4(path, (np.full((h, w, 3), 8 * i, np.uint8) for i in range(n_frames)), fps)


def tone(seconds: float, sample_rate: int = 44100, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return np.stack([0.3 * np.sin(2 * np.pi * hz * t)] * 2)


def readme_python_block(marker: str) -> str:
    """The README's first python block containing ``marker`` (the README's examples are run as written)."""
    text = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if marker in b]
    assert blocks, f"README has no python block with {marker!r}"
    return blocks[0]


def remux_audio(source: Path, out: Path, keep_until_s: float | None = None, garble: bool = False) -> None:
    """``source`` with its audio packets garbled (same sizes and times, random bytes) or dropped after ``keep_until_s``."""
    rng = np.random.default_rng(3)
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux(*[src.streams[i] for i in streams]):
            if packet.dts is None:
                continue
            audio = packet.stream.type == "audio"
            if audio and keep_until_s is not None and float(packet.pts * packet.time_base) >= keep_until_s:
                continue
            copy = av.Packet(rng.bytes(packet.size) if audio and garble else bytes(packet))
            copy.pts, copy.dts, copy.duration, copy.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
            copy.stream = streams[packet.stream.index]
            dst.mux(copy)


class Decoding(RunObserver):
    """A run observer that collects the decoding progress a run reports."""

    def __init__(self, events: list) -> None:
        self.events = events

    def decoding(self, clip_id: str, decoded_s: float, duration_s: float) -> None:
        self.events.append((clip_id, decoded_s, duration_s))
