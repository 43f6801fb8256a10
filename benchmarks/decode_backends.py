"""The decode limit with CPU decoding and with NVDEC: clips decoded in parallel processes, as run.py's decode_limit.

`python -m benchmarks.decode_backends [CLIP ...] [--backend cpu --backend cuda] [--workers N]` prints one JSON line
per backend and request (every frame at source size; what the cheap extractors ask for, 2 fps at short side 144):
frames per second, and how many CPU cores the decoding kept busy (what NVDEC leaves to the extractors).
Without clips it uses run.py's 1280x720 corpus (made under benchmarks/work/ when missing).
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mvfx.media.decode import ClipDecoder, VideoSpec
from mvfx.media.hwdecode import choose_decoder
from mvfx.media.probe import probe
from mvfx.pipeline.executor import local_cores

REQUESTS = {"every frame, source size": None, "2 fps, short side 144": VideoSpec(fps=2.0, short_side=144)}


def _decode_clip(path: str, backend: str, spec: VideoSpec | None) -> int:
    """Decode the clip's video with ``backend`` (cpu or cuda) for ``spec`` (None: every frame at source size); the
    number of source frames. A CUDA request that ends up on the CPU raises, so no figure is mislabelled."""
    info = probe(path)
    choice = choose_decoder(backend, "cuda" if backend == "cuda" else "cpu", info.video_codec)
    request = spec or VideoSpec(fps=info.fps)
    decoder = ClipDecoder(info, video_specs={request}, piece_frames={request: 16}, backend=choice)
    for _ in decoder.pieces():
        pass
    if decoder.notices:
        raise RuntimeError(decoder.notices[0])
    return round(info.fps * info.duration_s)


def decode_rate(paths: list[str], backend: str, spec: VideoSpec | None = None, workers: int | None = None) -> float:
    """Source frames decoded per second over all ``paths``, decoded ``workers`` at a time (default: one per core)."""
    frames, wall_s, _ = _decode_all(paths, backend, spec, workers)
    return frames / wall_s


def _decode_all(paths: list[str], backend: str, spec: VideoSpec | None, workers: int | None) -> tuple[int, float, float]:
    """Source frames, wall seconds and CPU seconds (all processes) of decoding ``paths`` in parallel."""
    cpu_before, start = _children_cpu_s(), time.perf_counter()
    with ProcessPoolExecutor(workers or local_cores()) as pool:
        frames = sum(pool.map(_decode_clip, paths, [backend] * len(paths), [spec] * len(paths)))
    return frames, time.perf_counter() - start, _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*")
    parser.add_argument("--backend", action="append", choices=["cpu", "cuda"])
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    if args.clips:
        clips = args.clips
    else:
        from benchmarks.corpus import make_corpus

        clips = sorted(str(p) for p in make_corpus(Path(__file__).parent / "work" / "1280x720", 16, (1280, 720)).glob("*.mp4"))
    for backend in args.backend or ["cpu"]:
        for label, spec in REQUESTS.items():
            frames, wall_s, cpu_s = _decode_all(clips, backend, spec, args.workers)
            print(json.dumps({"backend": backend, "request": label, "clips": len(clips), "frames_per_s": round(frames / wall_s, 1),
                              "cpu_cores_busy": round(cpu_s / wall_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
