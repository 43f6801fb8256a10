"""A small, labelled, synthetic music-video corpus with real signal in it.

Each clip is a real MP4 (H.264 video + AAC stereo audio) whose music and
picture follow the cues the emotion literature reports (Gabrielsson &
Lindstrom 2010 for music; Valdez & Mehrabian 1994 and Hanjalic & Xu 2005 for
colour, brightness, motion and cut rate):

============  =====  ====  ========  ======  ==========  ======  =====  ======  ====
class         tempo  mode  register  loud    dissonance  bright  hue    motion  cuts
============  =====  ====  ========  ======  ==========  ======  =====  ======  ====
exciting      fast   maj   high      loud    low         high    warm   fast    fast
fear          fast   dim   low       bursts  high        dark    blue   jerky   med
tension       med    tri   rising    cresc.  high        dark    red    med     med
neutral       med    5th   mid       medium  none        mid     grey   slow    slow
relaxation    slow   maj   mid       soft    none        bright  green  slow    slow
sad           slow   min   low       soft    low         dark    blue   slow    slow
============  =====  ====  ========  ======  ==========  ======  =====  ======  ====

Every clip jitters its class parameters, so classes overlap. Continuous
ratings follow the signal: music arousal rises with the loudness envelope,
visual arousal with motion, valence with brightness. ``annotations.csv``
holds audiovisual ratings (0.6 music + 0.4 picture); ``annotations_music.csv``
and ``annotations_visual.csv`` hold the single-modality ratings (for PAIR
pre-training). Each annotator lags, biases and adds noise to the gold curve.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mvfx.media.encode import write_mp4

CLASSES = ("exciting", "fear", "neutral", "relaxation", "sad", "tension")
SAMPLE_RATE = 44100
FPS = 24
RATING_HZ = 2.0
N_ANNOTATORS = 5


@dataclass(frozen=True)
class Style:
    arousal: float
    valence: float
    tempo: float  # beats per minute
    chord: tuple[int, ...]  # semitones above the root
    root_midi: int
    loudness: float  # 0..1
    brightness: float  # HSV value 0..1
    hue: float  # degrees
    saturation: float
    motion: float  # shape speed, frame heights per second
    shot_s: float  # mean shot length


STYLES = {
    "exciting": Style(0.7, 0.6, 150, (0, 4, 7, 12), 64, 0.85, 0.85, 40, 0.9, 0.9, 1.2),
    "fear": Style(0.6, -0.7, 135, (0, 1, 6, 9), 43, 0.6, 0.22, 225, 0.4, 0.7, 2.0),
    "tension": Style(0.35, -0.4, 110, (0, 6, 11), 52, 0.5, 0.38, 0, 0.75, 0.45, 2.5),
    "neutral": Style(0.0, 0.0, 95, (0, 7, 12), 57, 0.4, 0.55, 90, 0.12, 0.2, 4.0),
    "relaxation": Style(-0.6, 0.5, 66, (0, 4, 7, 11), 60, 0.22, 0.75, 150, 0.45, 0.08, 6.0),
    "sad": Style(-0.5, -0.6, 56, (0, 3, 7), 45, 0.18, 0.3, 230, 0.2, 0.05, 7.0),
}


def write_demo_corpus(
    out_dir: str | Path,
    n_clips: int = 36,
    seconds: float = 10.0,
    seed: int = 0,
    size: tuple[int, int] = (320, 180),
    on_clip: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``n_clips`` MP4s plus labels.csv and the three annotation CSVs; deterministic for a seed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = [CLASSES[i % len(CLASSES)] for i in range(n_clips)]
    rng.shuffle(labels)
    label_rows, ratings = [], {"": [], "_music": [], "_visual": []}
    seen: dict[str, int] = {}
    paths = []
    for i, label in enumerate(labels):
        clip_id = f"clip_{i:03d}"
        k = seen[label] = seen.get(label, -1) + 1
        split = "train" if k % 6 < 4 else ("val" if k % 6 == 4 else "test")
        label_rows.append((clip_id, label, split))
        clip_rng = np.random.default_rng([seed, i])
        path = out / f"{clip_id}.mp4"
        gold = _write_clip(path, STYLES[label], seconds, size, clip_rng)
        for suffix, curves in gold.items():
            ratings[suffix].extend(_annotate(clip_id, curves, clip_rng))
        paths.append(path)
        if on_clip:
            on_clip(path)
    _write_csv(out / "labels.csv", ("clip_id", "label", "split"), label_rows)
    for suffix, rows in ratings.items():
        _write_csv(out / f"annotations{suffix}.csv", ("clip_id", "annotator", "time_s", "arousal", "valence"), rows)
    return paths


def _write_csv(path: Path, header: tuple[str, ...], rows: list) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _jitter(style: Style, rng: np.random.Generator) -> Style:
    def j(x: float, rel: float) -> float:
        return float(x * (1 + rel * rng.standard_normal()))

    return Style(
        style.arousal, style.valence, j(style.tempo, 0.08), style.chord, style.root_midi + int(rng.integers(-2, 3)),
        float(np.clip(j(style.loudness, 0.15), 0.05, 1)), float(np.clip(style.brightness + 0.08 * rng.standard_normal(), 0.08, 0.95)),
        float((style.hue + 15 * rng.standard_normal()) % 360), float(np.clip(style.saturation + 0.08 * rng.standard_normal(), 0.03, 1)),
        max(0.01, j(style.motion, 0.2)), max(0.5, j(style.shot_s, 0.2)),
    )


def _write_clip(path: Path, base: Style, seconds: float, size: tuple[int, int], rng: np.random.Generator) -> dict:
    style = _jitter(base, rng)
    t_audio = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    # Slow loudness and brightness envelopes in [-1, 1]: what the ratings follow within a clip.
    loud_env = _slow_curve(seconds, rng)
    light_env = _slow_curve(seconds, rng)
    audio = _music(style, t_audio, loud_env)
    n_frames = int(round(seconds * FPS))
    width, height = size
    motion_level: list[float] = []

    def frames():
        for frame_rgb, speed in _frames(style, n_frames, width, height, light_env, rng):
            motion_level.append(speed)
            yield frame_rgb

    write_mp4(path, frames(), FPS, np.stack([audio, audio * 0.9]), SAMPLE_RATE)
    grid = np.arange(0, seconds - 1e-9, 1 / RATING_HZ)
    loud = np.interp(grid, np.linspace(0, seconds, len(loud_env)), loud_env)
    light = np.interp(grid, np.linspace(0, seconds, len(light_env)), light_env)
    motion = np.interp(grid, np.arange(n_frames) / FPS, np.asarray(motion_level) / max(style.motion, 1e-6) - 1)
    music = (np.clip(base.arousal + 0.3 * loud, -1, 1), np.clip(base.valence + 0.1 * loud, -1, 1))
    visual = (np.clip(base.arousal + 0.25 * motion, -1, 1), np.clip(base.valence + 0.3 * light, -1, 1))
    both = tuple(0.6 * m + 0.4 * v for m, v in zip(music, visual))
    return {"": (grid, *both), "_music": (grid, *music), "_visual": (grid, *visual)}


def _slow_curve(seconds: float, rng: np.random.Generator, points_per_s: int = 50) -> np.ndarray:
    t = np.linspace(0, seconds, max(2, int(seconds * points_per_s)))
    period = rng.uniform(4, 9)
    return np.clip(np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + 0.2 * rng.standard_normal(), -1, 1)


def _music(style: Style, t: np.ndarray, loud_env: np.ndarray) -> np.ndarray:
    """Chord pad + bass + beat-synchronous melody and percussion, under a loudness envelope."""
    beat = 60.0 / style.tempo
    bar = 4 * beat
    progression = (0, 5, 7, 0) if 4 in style.chord else (0, 8, 5, 7)
    root = style.root_midi + np.array(progression)[(t // bar).astype(int) % 4]
    pad = sum(_tone(_midi_hz_arr(root + i), t, harmonics=3) for i in style.chord) / len(style.chord)
    bass = _tone(_midi_hz_arr(root - 12), t, harmonics=2)
    scale = (0, 2, 4, 7, 9) if 4 in style.chord else (0, 2, 3, 7, 8)
    step = (t // beat).astype(int)
    notes = root + 12 + np.array(scale)[(step * 3 + step // 4) % len(scale)]
    phase_in_beat = (t % beat) / beat
    melody = _tone(_midi_hz_arr(notes), t, harmonics=2) * np.exp(-4 * phase_in_beat)
    kick = np.sin(2 * np.pi * 55 * (t % beat)) * np.exp(-25 * (t % beat))
    hat = np.random.default_rng(int(style.tempo * 1000)).standard_normal(len(t)) * np.exp(-60 * ((t + beat / 2) % beat))
    envelope = np.interp(t, np.linspace(0, t[-1], len(loud_env)), loud_env)
    gain = style.loudness * (1 + 0.6 * envelope) / 1.6
    mix = 0.35 * pad + 0.25 * bass + 0.3 * melody + 0.5 * kick * style.loudness + 0.08 * hat * style.loudness
    return np.clip(0.6 * gain * mix, -1, 1)


def _midi_hz_arr(notes: np.ndarray) -> np.ndarray:
    return 440.0 * 2 ** ((np.asarray(notes, float) - 69) / 12)


def _tone(freq: np.ndarray, t: np.ndarray, harmonics: int) -> np.ndarray:
    # Integrate frequency so that note changes keep a continuous phase.
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(freq, t.shape)) / SAMPLE_RATE
    return sum(np.sin(h * phase) / h for h in range(1, harmonics + 1))


def _hsv_rgb(h: float, s: float, v: float) -> np.ndarray:
    c = v * s
    x = c * (1 - abs((h / 60) % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h // 60) % 6]
    return (np.array([r, g, b]) + (v - c)) * 255


def _frames(style: Style, n: int, width: int, height: int, light_env: np.ndarray, rng: np.random.Generator):
    """RGB frames: a gradient background and moving discs; a hard cut changes hue, layout and brightness."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = yy / height
    cut_at = np.cumsum(rng.exponential(style.shot_s, size=n) * FPS).astype(int)
    shot, shot_start = -1, 0
    discs = []
    for i in range(n):
        if shot < 0 or i >= cut_at[shot]:
            # A hard cut: the hue swings to the other side of the class hue, the brightness
            # jumps, the gradient flips and the discs move, as a real shot change would.
            shot += 1
            side = 1 if shot % 2 else -1
            hue = (style.hue + side * rng.uniform(20, 35)) % 360
            gradient = (0.7 + 0.3 * (ramp if side > 0 else 1 - ramp))[..., None]
            discs = [
                (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.08, 0.2) * height, rng.uniform(0, 2 * np.pi))
                for _ in range(3)
            ]
            bright_shot = np.clip(style.brightness * (1 + side * rng.uniform(0.15, 0.3)), 0.05, 1)
            shot_start = i
        light = np.interp(i / n, np.linspace(0, 1, len(light_env)), light_env)
        v = float(np.clip(bright_shot * (1 + 0.35 * light), 0.03, 1))
        frame = _hsv_rgb(hue, style.saturation, v)[None, None, :] * gradient
        jerk = 1.0 + (rng.standard_normal() * 0.8 if style.root_midi < 48 else 0.0)
        speed = style.motion * height / FPS * max(0.1, jerk) * (1 + 0.4 * light)
        for k, (x0, y0, r, ang) in enumerate(discs):
            travel = (i - shot_start) * speed
            cx = (x0 + travel * np.cos(ang)) % width
            cy = (y0 + travel * np.sin(ang)) % height
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            disc_hue = (hue + 180 + 40 * k) % 360
            frame[mask] = _hsv_rgb(disc_hue, min(1.0, style.saturation + 0.2), min(1.0, v * 1.2))
        yield np.clip(frame, 0, 255).astype(np.uint8), speed * FPS / height


def _annotate(clip_id: str, curves: tuple, rng: np.random.Generator) -> list[tuple]:
    """Noisy, lagged, biased copies of the gold curves, one per annotator."""
    grid, arousal, valence = curves
    rows = []
    for a in range(N_ANNOTATORS):
        lag = int(rng.integers(0, 3))
        bias = rng.normal(0, 0.08, size=2)
        noise = rng.normal(0, 0.08, size=(2, len(grid)))
        ar = np.clip(np.concatenate([np.full(lag, arousal[0]), arousal[: len(grid) - lag]]) + bias[0] + noise[0], -1, 1)
        va = np.clip(np.concatenate([np.full(lag, valence[0]), valence[: len(grid) - lag]]) + bias[1] + noise[1], -1, 1)
        rows.extend((clip_id, f"a{a + 1}", round(float(t), 2), round(float(x), 4), round(float(y), 4)) for t, x, y in zip(grid, ar, va))
    return rows
