"""`python -m benchmarks.run sol`: speed of light per stage, on the simulated GPU (docs/gpu.md, "The simulated device").

For the deep 9, the cheap 4 and all 13 extractors on 1280x720 H.264 clips, at -j 1 and -j 2:

- host limit: the whole pipeline with passes that take no time (decoding, scaling, upload, preprocessing, MTCNN's
  cascade, bookkeeping, storing), in x real time, and per core (media seconds per CPU second of every process);
- device limit: media seconds over the sum of the modelled pass times (the simulated device's busy seconds);
- achieved: x real time with the simulated device at a modelled rate;
- efficiency: achieved / min(host limit, device limit): 1 when the slower side is kept busy all the time;
- the seconds per stage of each run (``pipeline.timing``).

Two rates: the H100 model (the device is faster than the host: host-bound) and a device slow enough to be the
limit, which shows whether waiting for the device overlaps the host's work. Executors are kept warm across runs
(networks set up, each input shape's pass planned), so set-up is left out, as on a node that runs for hours.
"""
from __future__ import annotations

import math
import resource
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.corpus import make_corpus
from benchmarks.gpu import CHEAP, DEEP
from mvfx.extractors.simulated_device import DeviceQueue, SimulatedDevice
from mvfx.pipeline.executor import DaskExecutor, InProcessExecutor, clips_per_worker
from mvfx.pipeline.plan import default_clips_in_flight
from mvfx.pipeline.run import run_extract
from mvfx.pipeline.timing import describe

SETS = {"deep (9)": DEEP, "cheap (4)": CHEAP, "all 13": DEEP + CHEAP}
OPTIONS = {"flownets": {"width": "256", "height": "192"}}  # as benchmarks/gpu.py
CLIPS, CLIP_S, SIZE = 12, 10.0, (1280, 720)
HOST = "host limit"
RATES = {HOST: (math.inf, 0.0), "H100 model": (SimulatedDevice.tflops, SimulatedDevice.launch_us),
         "slow device": (0.4, SimulatedDevice.launch_us)}  # 0.4 TFLOP/s: the deep 9 at about 2x real time on the device
WORKERS = (1, 2)


def options_for(names: list[str]) -> dict:
    """OPTIONS for the extractors of ``names`` only (a run refuses options for an extractor it does not run)."""
    return {name: values for name, values in OPTIONS.items() if name in names}


def cpu_seconds(executor) -> float:
    """User + system seconds of this process and, on a Dask executor, of its workers."""
    def own() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    workers = executor.client.run(own).values() if isinstance(executor, DaskExecutor) else []
    return own() + sum(workers)


def _warm(executor, corpus: Path, names: list[str], device: str, work: Path) -> None:
    """Set the networks up and plan their passes in every worker: a run over short clips, until each worker has them."""
    for _ in range(4):
        store = work / "sol-warm.zarr"
        shutil.rmtree(store, ignore_errors=True)
        run_extract(str(corpus), str(store), names, options_for(names), device=device, executor=executor)
        if not isinstance(executor, DaskExecutor) or all(executor.client.run(_has_set_up, names).values()):
            return


def _has_set_up(names: list[str]) -> bool:
    from mvfx.pipeline import tasks

    return set(names) <= {spec.name for spec, *_ in tasks._WORKER_EXTRACTORS}


def _executor(workers: int):
    in_flight = clips_per_worker(default_clips_in_flight("sim"), CLIPS, workers)
    return InProcessExecutor(in_flight) if workers == 1 else DaskExecutor(workers=workers, clips_in_flight=in_flight)


def bench_sol(results: dict, work: Path, runs: int, save) -> None:
    """Fill ``results["sol"]``; ``save(results)`` after each configuration (a run cut short keeps what it measured)."""
    corpus = make_corpus(work / "sol-720p", CLIPS, SIZE, seconds=CLIP_S, seed=11)
    warm_corpus = make_corpus(work / "sol-720p-warm", 4, SIZE, seconds=3.0, seed=12)
    media = CLIPS * CLIP_S
    sol = results["sol"] = {"clips": f"{CLIPS} x {CLIP_S:.0f} s {SIZE[0]}x{SIZE[1]} H.264", "runs": runs, "sets": {}}
    for label, names in SETS.items():
        for workers in WORKERS:
            executor = _executor(workers)
            try:
                device = SimulatedDevice(tflops=math.inf, launch_us=0.0).resolve()
                queue = DeviceQueue(device.queue)
                _warm(executor, warm_corpus, names, device.spec(), work)
                row = sol["sets"].setdefault(label, {})[f"-j {workers}"] = {"executor": executor.description}
                for rate, (tflops, launch_us) in RATES.items():
                    queue.configure(tflops, launch_us)
                    row[rate] = _measure(executor, corpus, names, device.spec(), queue, media, runs, work)
                    row[rate]["tflops"], row[rate]["launch_us"] = tflops, launch_us
                    print(f"sol {label} -j {workers} {rate}: {row[rate]['x_realtime']:.2f}x real time "
                          f"({row[rate]['per_core']:.2f}x per core), device limit {row[rate]['device_limit']:.2f}x", flush=True)
                for rate in RATES:
                    if rate != HOST:
                        bound = min(row[HOST]["x_realtime"], row[rate]["device_limit"])
                        row[rate]["efficiency"] = row[rate]["x_realtime"] / bound
            finally:
                executor.close()
            save(results)


def _measure(executor, corpus: Path, names: list[str], device: str, queue: DeviceQueue, media: float, runs: int,
             work: Path) -> dict:
    """Medians over ``runs`` runs: x real time, per core, device limit and busy share; the last run's stages."""
    walls, cpus, busy, stages = [], [], [], {}
    for _ in range(runs):
        store = work / "sol.zarr"
        shutil.rmtree(store, ignore_errors=True)
        busy_before, cpu_before, start = queue.busy_seconds(), cpu_seconds(executor), time.perf_counter()
        summary = run_extract(str(corpus), str(store), names, options_for(names), device=device, executor=executor)
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds(executor) - cpu_before)
        busy.append(queue.busy_seconds() - busy_before)
        assert summary.ok, summary.failures
        stages = dict(summary.stage_seconds)
    wall, cpu, device_s = statistics.median(walls), statistics.median(cpus), statistics.median(busy)
    return {"wall_s": walls, "cpu_s": cpus, "device_s": busy, "x_realtime": media / wall, "per_core": media / cpu,
            "device_limit": media / device_s if device_s else math.inf, "device_busy": device_s / wall,
            "stage_seconds": stages}


def markdown(sol: dict) -> list[str]:
    lines = ["", f"Speed of light on the simulated GPU ({sol['clips']}, medians of {sol['runs']} runs, warm workers; "
             "x real time; per core: media seconds per CPU second of all processes):", "",
             "| set | -j | host limit (per core) | device model | device limit | achieved | device busy | efficiency |",
             "|---|---|---|---|---|---|---|---|"]
    for label, by_workers in sol["sets"].items():
        for workers, row in by_workers.items():
            host = row[HOST]
            for rate, r in row.items():
                if rate in (HOST, "executor"):
                    continue
                lines.append(f"| {label} | {workers} | {host['x_realtime']:.2f} ({host['per_core']:.2f}) | {rate} "
                             f"({r['tflops']:g} TFLOP/s) | {r['device_limit']:.2f} | {r['x_realtime']:.2f} | "
                             f"{100 * r['device_busy']:.0f} % | {r['efficiency']:.2f} |")
    lines += ["", "Time per stage (seconds summed over clips, `pipeline/timing.py`):", ""]
    for label, by_workers in sol["sets"].items():
        for workers, row in by_workers.items():
            for rate, r in row.items():
                if rate != "executor":
                    lines.append(f"- {label}, {workers}, {rate}: {describe(r['stage_seconds'])}")
    return [*lines, ""]
