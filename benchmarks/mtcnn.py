"""MTCNN alone on the CPU: x real time per core at the `faces` extractor's 2 fps, and where its time goes.

CPU seconds of ``FaceDetector.detect`` on one thread over the frames the extractor sees (2 fps, short side 360)
of two 30 s clips: the astronaut photograph panning (one real face in every frame, and textures that give R-Net
about 80 candidates a frame) and the real Big Buck Bunny cartoon (../shared/data; no human face; left out when
absent). Decoding is not counted: this is the detector, which on a GPU node is the part of the deep set that runs on
the host. Per network, the CPU seconds of its forward passes; "rest" is the pyramid, the crops and the suppression.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.corpus import astronaut_clip

BUNNY = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "video" / "big_buck_bunny_0_30.webm"
NETWORKS = ("P-Net", "R-Net", "O-Net")
GOAL = 15.0  # x real time per core


def _frames(path: Path) -> tuple[np.ndarray, float]:
    """The `faces` extractor's frames of ``path`` and its duration in seconds."""
    from mvfx.extractors.faces import FacesConfig
    from mvfx.media.decode import VideoSpec, decode
    from mvfx.media.probe import probe

    config = FacesConfig()
    spec = VideoSpec(fps=config.fps, short_side=config.short_side)
    info = probe(str(path))
    return decode(info, video_specs={spec}).video[spec].images, info.duration_s


def _timed_networks(detector) -> dict[str, float]:
    """CPU seconds spent in each network's forward passes, accumulated by hooks."""
    spent, started = dict.fromkeys(NETWORKS, 0.0), {}
    for name, net in zip(NETWORKS, detector.nets):
        net.register_forward_pre_hook(lambda *_, name=name: started.__setitem__(name, time.process_time()))
        net.register_forward_hook(lambda *_, name=name: spent.__setitem__(name, spent[name] + time.process_time() - started[name]))
    return spent


def bench_mtcnn(results: dict, work: Path, runs: int) -> None:
    import torch

    from mvfx.extractors.faces import FaceDetector, FacesConfig

    clips = {"astronaut, panning (a face in every frame)": astronaut_clip(work / "mtcnn" / "astronaut_30s.mp4", 30.0)}
    if BUNNY.exists():
        clips["Big Buck Bunny 0-30 s (real cartoon, no human face)"] = BUNNY
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        detector = FaceDetector(FacesConfig(), "cpu", random_weights=False)
        spent = _timed_networks(detector)
        results["mtcnn"] = {}
        for label, path in clips.items():
            frames, seconds = _frames(path)
            detector.detect(frames[:8])  # warm-up
            rows = []
            for _ in range(runs):
                spent.update(dict.fromkeys(NETWORKS, 0.0))
                start = time.process_time()
                faces = sum(len(found.boxes) for found in detector.detect(frames))
                rows.append({"cpu_s": time.process_time() - start, **spent})
            median = sorted(rows, key=lambda row: row["cpu_s"])[len(rows) // 2]  # a run: its split adds up
            cpu = [row["cpu_s"] for row in rows]
            results["mtcnn"][label] = {"media_s": seconds, "frames": len(frames), "faces": faces, "cpu_s": cpu,
                                       "x_realtime_per_core": seconds / median["cpu_s"],
                                       "range": [seconds / max(cpu), seconds / min(cpu)], "median_run": median}
            print(label, f"{seconds / median['cpu_s']:.1f}x real time per core", flush=True)
    finally:
        torch.set_num_threads(threads)


def markdown(mtcnn: dict) -> list[str]:
    lines = ["", f"| MTCNN alone (CPU, one thread, 2 fps, real weights; goal {GOAL:.0f}x) | x real time per core (range) "
             "| CPU s | P-Net | R-Net | O-Net | rest | faces |", "|---|---|---|---|---|---|---|---|"]
    for label, row in mtcnn.items():
        run = row["median_run"]
        rest = run["cpu_s"] - sum(run[name] for name in NETWORKS)
        lines.append(f"| {label}, {row['frames']} frames | {row['x_realtime_per_core']:.1f} ({row['range'][0]:.1f}-"
                     f"{row['range'][1]:.1f}) | {run['cpu_s']:.2f} | " + " | ".join(f"{run[n]:.2f}" for n in NETWORKS)
                     + f" | {rest:.2f} | {row['faces']} |")
    return lines
