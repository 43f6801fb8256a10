"""musicnn's whole command: `mvfx extract -e musicnn,musicnn_tags -j 1`, x real time per core, on one 10-minute track
and on a corpus of six (an hour), start-up, decoding and the store included.

The track is the real music of ../shared/data/music (the four tracks, mono, 44.1 kHz), looped to 10 minutes and
encoded once as AAC (cached under work/); the corpus holds six links to it. Each run is one `mvfx` process with a new
store, timed from outside: wall seconds, and the CPU seconds and peak memory the kernel counts for it. Per core, by
CPU: media seconds per CPU second; by wall: media seconds per wall second per core of the machine. The start-up (about
3.7 s of CPU, two thirds of it imports) is paid once per command, so the corpus shows what a researcher's run costs.
Left out, with a note, when ../shared/data/music is absent.
"""
from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.memory import peak_of

MUSIC = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "music"
TRACK_S = 600.0
CORPUS_TRACKS = 6
RATE = 44100
GOAL = 50.0  # x real time per core


def ten_minute_track(path: Path) -> Path:
    """``path``: the real tracks, mono, looped to ``TRACK_S`` seconds, as AAC (made once)."""
    import av

    if path.exists():
        return path
    pieces = []
    for source in sorted(MUSIC.glob("*.ogg")):
        with av.open(str(source)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    music = np.concatenate(pieces)
    samples = np.tile(music, int(TRACK_S * RATE) // len(music) + 1)[: int(TRACK_S * RATE)].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.m4a")
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate = RATE
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    partial.rename(path)
    return path


def _corpora(work: Path) -> dict[str, tuple[Path, float]]:
    """label -> (folder, media seconds): one track, and ``CORPUS_TRACKS`` links to it."""
    track = ten_minute_track(work / "musicnn" / "ten_minutes.m4a")
    one, hour = work / "musicnn" / "one", work / "musicnn" / "hour"
    for folder, count in ((one, 1), (hour, CORPUS_TRACKS)):
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            link = folder / f"track_{k}.m4a"
            if not link.exists():
                link.hardlink_to(track)
    return {"one 10-minute track": (one, TRACK_S), f"{CORPUS_TRACKS} x 10 minutes": (hour, CORPUS_TRACKS * TRACK_S)}


def bench_musicnn(results: dict, work: Path, runs: int, cores: int) -> None:
    if not MUSIC.exists():
        results["musicnn"] = {"skipped": f"{MUSIC} is absent"}
        return
    mvfx = str(Path(sys.executable).parent / "mvfx")
    store = work / "musicnn" / "store.zarr"
    rows = results["musicnn"] = {}
    for label, (corpus, media) in _corpora(work).items():
        measured = []
        for _ in range(runs):
            shutil.rmtree(store, ignore_errors=True)
            measured.append(peak_of([mvfx, "extract", str(corpus), "--store", str(store), "-e", "musicnn,musicnn_tags",
                                     "-j", "1"]))
        cpu, wall = (statistics.median(run[key] for run in measured) for key in ("cpu_s", "wall_s"))
        rows[label] = {"media_s": media, "runs": measured, "cpu_s": cpu, "wall_s": wall,
                       "per_core_by_cpu": media / cpu, "per_core_by_wall": media / wall / cores,
                       "peak_gib": max(run["peak_rss_gib"] for run in measured)}
        print(f"musicnn {label}: {media / cpu:.1f}x real time per core by CPU, {media / wall / cores:.1f}x by wall",
              flush=True)


def markdown(musicnn: dict) -> list[str]:
    if "skipped" in musicnn:
        return ["", f"musicnn's command: not measured ({musicnn['skipped']})."]
    lines = ["", f"| `mvfx extract -e musicnn,musicnn_tags -j 1` (goal {GOAL:.0f}x per core) | CPU s | wall s | per core, "
             "by CPU | per core, by wall | peak MiB |", "|---|---|---|---|---|---|"]
    for label, row in musicnn.items():
        lines.append(f"| {label} | {row['cpu_s']:.2f} | {row['wall_s']:.2f} | {row['per_core_by_cpu']:.1f}x | "
                     f"{row['per_core_by_wall']:.1f}x | {row['peak_gib'] * 1024:.0f} |")
    return lines
