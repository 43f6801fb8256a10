"""`python -m benchmarks.run gpu`: mvfx on a GPU node, with the GPU's utilisation sampled through NVML.

Reports, with the device's name: x real time per deep extractor (one 20 s
1280x720 H.264 clip, decode included, set-up excluded); end to end for the
deep set, the cheap set and all 13 extractors over 4 clips of 60 s at
-j 1 and -j N; mean and peak GPU utilisation and memory over each run; and
the decode limit (every frame at source size, one process per core group)
with CPU decoding and with NVDEC. Random weights: speed does not depend on
the values. Skips cleanly without CUDA.

The clips are made once (x264, 20 s each) and repeated to 60 s by copying
packets, so making the corpus costs seconds.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

DEEP = ["resnet50", "places365", "slowfast_r50", "i3d", "flownets", "yolov5", "vggish", "faces", "face_expression"]
CHEAP = ["colour", "emobase", "logmel_phase", "shots"]
SETS = {"deep (9)": DEEP, "cheap (4)": CHEAP, "all 13": DEEP + CHEAP}
# The goals first (all 13 at -j N, the deep set at -j 1), so a run cut short by a time limit keeps them.
END_TO_END = [("all 13", "N"), ("deep (9)", 1), ("all 13", 1), ("deep (9)", "N"), ("cheap (4)", "N"), ("cheap (4)", 1)]
CLIPS, CLIP_S, SIZE = 4, 60.0, (1280, 720)


class GpuSampler:
    """Mean and peak utilisation (%) and peak memory (GiB) of GPU 0, sampled every ``every_s`` seconds."""

    def __init__(self, every_s: float = 0.25) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle, self.every_s = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0), every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()

    def __enter__(self) -> GpuSampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            utilisation = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            used = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**30
            self.samples.append((float(utilisation), used))

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_mean": 0.0, "gpu_util_max": 0.0, "gpu_mem_max_gib": 0.0}
        util = [u for u, _ in self.samples]
        return {"gpu_util_mean": sum(util) / len(util), "gpu_util_max": max(util), "gpu_mem_max_gib": max(m for _, m in self.samples)}


def gpu_corpus(work: Path) -> tuple[Path, Path]:
    """(a folder of CLIPS clips of CLIP_S s at SIZE, a folder with one 20 s clip)."""
    from benchmarks.corpus import make_corpus, repeat_clip

    source = make_corpus(work / "gpu-20s", CLIPS, SIZE, seconds=20.0, seed=7)
    long = work / "gpu-60s"
    long.mkdir(parents=True, exist_ok=True)
    for clip in sorted(source.glob("*.mp4")):
        repeat_clip(clip, round(CLIP_S / 20.0), long / clip.name)
    one = work / "gpu-one"
    one.mkdir(exist_ok=True)
    first = sorted(source.glob("*.mp4"))[0]
    if not (one / first.name).exists():
        shutil.copy(first, one / first.name)
    return long, one


def bench_gpu(results: dict, work: Path, timed, media_seconds, save, workers_n: int = 4) -> None:
    """Fill ``results["gpu"]``, calling ``save(results)`` after each figure (a run stopped at a time limit keeps
    what it measured); each figure is in x real time (media seconds / wall seconds)."""
    import torch

    from mvfx.pipeline.run import run_extract
    from mvfx.pipeline.timing import describe

    if not torch.cuda.is_available():
        print("gpu: skipped (torch sees no CUDA device)", flush=True)
        results["gpu"] = {"skipped": "no CUDA device"}
        return
    gpu = results["gpu"] = {"device": torch.cuda.get_device_name(0), "extractors": {}, "end_to_end": {}, "decode_limit": {}}
    long, one = gpu_corpus(work)
    options = {"flownets": {"width": "256", "height": "192"}}

    stages: dict[str, float] = {}  # the last run's seconds per stage (pipeline.timing): where the time went

    def extract(corpus: Path, names: list[str], workers: int) -> None:
        store = work / "gpu.zarr"
        shutil.rmtree(store, ignore_errors=True)
        summary = run_extract(str(corpus), str(store), names, options, workers=workers, device="cuda", random_weights=True)
        stages.clear()
        stages.update(summary.stage_seconds)
        gpu.setdefault("threads", {})[f"-j {workers}"] = summary.threads
        gpu.setdefault("notices", []).extend(n for n in summary.notices if n not in gpu["notices"])
        gpu.setdefault("failures", []).extend(f"{clip} [{f.extractor}/{f.stage}] {f.message}" for clip, f in summary.failures)

    long_s = media_seconds(sorted(str(p) for p in long.glob("*.mp4")))
    for label, workers in END_TO_END:
        workers = workers_n if workers == "N" else workers
        with GpuSampler() as sampler:
            t = timed(lambda names=SETS[label], workers=workers: extract(long, names, workers), runs=1)
        key = f"{label}, -j {workers}"
        gpu["end_to_end"][key] = {"seconds": t["median"], "x_realtime": long_s / t["median"], **sampler.summary(),
                                  "stage_seconds": dict(stages)}
        print(f"gpu {key}: {long_s / t['median']:.1f}x real time, GPU {sampler.summary()['gpu_util_mean']:.0f}% busy", flush=True)
        print(f"  time per stage: {describe(stages)}", flush=True)
        save(results)
    one_s = media_seconds(sorted(str(p) for p in one.glob("*.mp4")))
    for name in DEEP:
        extract(one, [name], 1)  # set-up, CUDA kernels' first launch, cuDNN's choice: excluded
        with GpuSampler() as sampler:
            t = timed(lambda name=name: extract(one, [name], 1), runs=1)
        gpu["extractors"][name] = {"x_realtime": one_s / t["median"], **sampler.summary(), "stage_seconds": dict(stages)}
        print(f"gpu {name}: {one_s / t['median']:.1f}x real time", flush=True)
        save(results)
    bench_decode_limit(gpu, long, long_s)
    save(results)


def bench_decode_limit(gpu: dict, corpus: Path, media_s: float) -> None:
    from benchmarks.decode_backends import decode_rate

    clips = sorted(str(p) for p in corpus.glob("*.mp4"))
    for backend in ("cpu", "cuda"):
        try:
            fps = decode_rate(clips, backend)
        except RuntimeError as exc:  # NVDEC not usable here: say so instead of a CPU figure labelled NVDEC
            gpu["decode_limit"][backend] = {"frames_per_s": 0.0, "x_realtime": 0.0, "error": str(exc)}
            continue
        gpu["decode_limit"][backend] = {"frames_per_s": fps, "x_realtime": fps * media_s / _frames(clips) if fps else 0.0}
        print(f"gpu decode limit ({backend}): {fps:.0f} frames/s", flush=True)


def _frames(clips: list[str]) -> int:
    from mvfx.media.probe import probe

    return sum(round(probe(c).duration_s * probe(c).fps) for c in clips)


def markdown(gpu: dict) -> list[str]:
    from mvfx.pipeline.timing import describe

    if "device" not in gpu:
        return [f"GPU: {gpu.get('skipped', 'not run')}", ""]
    lines = [f"GPU: {gpu['device']}; threads {gpu.get('threads', {})}; failures: {len(gpu.get('failures', []))}", "",
             "| extractor (20 s 1280x720) | x real time | GPU busy (mean) |", "|---|---|---|"]
    lines += [f"| {k} | {v['x_realtime']:.1f} | {v['gpu_util_mean']:.0f} % |" for k, v in gpu["extractors"].items()]
    lines += ["", f"| {CLIPS} clips x {CLIP_S:.0f} s 1280x720 | x real time | GPU busy mean / max | GPU memory max |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['x_realtime']:.1f} | {v['gpu_util_mean']:.0f} / {v['gpu_util_max']:.0f} % | {v['gpu_mem_max_gib']:.1f} GiB |"
              for k, v in gpu["end_to_end"].items()]
    lines += ["", "Where the time went (seconds per stage summed over clips, `pipeline/timing.py`):", ""]
    lines += [f"- {k}: {describe(v['stage_seconds'])}" for k, v in gpu["end_to_end"].items() if v.get("stage_seconds")]
    lines += ["", "| decode limit (every frame, source size) | frames/s | x real time |", "|---|---|---|"]
    lines += [f"| {k} | {v['frames_per_s']:.0f} | {v['x_realtime']:.1f} |" for k, v in gpu["decode_limit"].items()]
    return [*lines, ""]
