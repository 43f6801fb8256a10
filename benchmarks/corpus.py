"""A benchmark corpus: 30-second H.264 + AAC clips at 640x360 and 1280x720, made fast and cached.

Frames pan across a large noisy texture (so the encoder sees motion and
detail, like real footage) with a slowly changing brightness and a hard
cut every few seconds; x264 "veryfast", yuv420p, 24 fps; AAC stereo
44.1 kHz music-like audio (chords, beat, noise). Made once under
benchmarks/work/ and reused.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mvfx.media.encode import write_mp4

FPS = 24
SAMPLE_RATE = 44100


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    big = cv2.resize(small, (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)
    return np.clip(big.astype(np.int16) + rng.integers(-12, 12, big.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def _frames(width: int, height: int, seconds: float, rng: np.random.Generator):
    textures = [_texture(width, height, rng) for _ in range(3)]
    n = int(seconds * FPS)
    cut_every = int(rng.uniform(2, 5) * FPS)
    for i in range(n):
        texture = textures[(i // cut_every) % len(textures)]
        x = int((i * 3) % width)
        y = int(height / 2 + height / 2 * np.sin(i / 40))
        gain = 0.8 + 0.2 * np.sin(i / 30)
        yield (texture[y : y + height, x : x + width] * gain).astype(np.uint8)


def _audio(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    root = rng.uniform(110, 220)
    chord = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.26, 1.5)) / 3
    beat = np.sin(2 * np.pi * 60 * t) * np.exp(-20 * (t % (60 / rng.uniform(70, 150))))
    mono = 0.3 * chord * (0.6 + 0.4 * np.sin(t / 3)) + 0.3 * beat + 0.02 * rng.standard_normal(len(t))
    return np.stack([mono, 0.9 * mono]).astype(np.float32)


def make_corpus(root: Path, n_clips: int, size: tuple[int, int], seconds: float = 30.0, seed: int = 0) -> Path:
    """``root`` holding exactly ``n_clips`` clips of ``size`` and ``seconds``: existing clips of that length are kept,
    others (another length, or past ``n_clips``, left by a run that asked for other clips) are removed, since a
    benchmark extracts the whole folder and divides by ``n_clips * seconds``."""
    from mvfx.media.probe import probe

    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    wanted = {root / f"bench_{width}x{height}_{k:03d}.mp4" for k in range(n_clips)}
    for path in root.glob("*.mp4"):
        if path not in wanted or abs(probe(str(path)).duration_s - seconds) > 0.5:
            path.unlink()
    for k in range(n_clips):
        path = root / f"bench_{width}x{height}_{k:03d}.mp4"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, width, k])
        tmp = path.with_suffix(".partial.mp4")
        write_mp4(tmp, _frames(width, height, seconds, rng), FPS, _audio(seconds, rng), SAMPLE_RATE)
        tmp.rename(path)
    return root


def repeat_clip(source: Path, times: int, out: Path) -> Path:
    """``source`` played ``times`` times in a row, as one file: packets copied with shifted timestamps (no
    re-encoding), so a 10-minute benchmark clip costs seconds to make, not half an hour of x264."""
    import av

    if out.exists():
        return out
    tmp = out.with_suffix(".partial.mp4")
    with av.open(str(source)) as src, av.open(str(tmp), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        packets = [p for p in src.demux(*[src.streams[i] for i in streams]) if p.dts is not None]
        span = {}  # decode-time length of each stream: repetition k starts k spans later, so dts keeps rising
        for i in streams:
            dts = [(p.dts, p.duration or 0) for p in packets if p.stream.index == i]
            span[i] = max(d + n for d, n in dts) - min(d for d, _ in dts)
        for k in range(times):
            for packet in packets:
                i = packet.stream.index
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts + k * span[i], packet.dts + k * span[i]
                copy.duration, copy.time_base, copy.is_keyframe = packet.duration, packet.time_base, packet.is_keyframe
                copy.stream = streams[i]
                dst.mux(copy)
    tmp.rename(out)
    return out


def astronaut_clip(path: Path, seconds: float) -> Path:
    """640x360 at 24 fps: scikit-image's astronaut photograph (one real face), slowly panning; made once."""
    from skimage import data

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        photo = cv2.resize(data.astronaut(), (1024, 1024))
        frames = (np.ascontiguousarray(photo[200:560, 100 + i // 4 : 740 + i // 4]) for i in range(int(FPS * seconds)))
        tmp = path.with_suffix(".partial.mp4")  # an interrupted run leaves no clip that looks finished
        write_mp4(tmp, frames, FPS)
        tmp.rename(path)
    return path
