"""The GPU path on a simulated device (``--device sim``): passes that take modelled time, as on a real GPU.

These run the CUDA code path (GPU batch plan, memory guard, shared forward passes, clips in flight) with forward
passes that wait, with the GIL released, for the time the device model gives them, so the timing bugs that instant
CPU passes hide get a window: a clip storing another clip's rows, a model thread whose death hangs the run.
The simulated rows are a fingerprint of each item's input, so a test can tell whose rows a clip got.
"""
from __future__ import annotations

import errno
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from mvfx.extractors import create
from mvfx.extractors.simulated_device import DeviceQueue, SimulatedDevice
from mvfx.extractors.torch_device import resolve_device
from mvfx.media.errors import MvfxError
from mvfx.pipeline import streaming, tasks
from mvfx.pipeline.executor import ClipPlaces
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

SLOW_DEVICE = "sim:tflops=0.5,launch_us=10"  # a ResNet-50 frame takes 16 ms, an 8-frame I3D window 0.11 s
NETWORKS = ["resnet50", "i3d"]
OPTIONS = {"resnet50": {"fps": "2"}, "i3d": {"fps": "8", "window_frames": "8", "stride_frames": "8"}}


@pytest.fixture(autouse=True)
def fresh_worker_extractors():
    """Each test sets its extractors up afresh (sharing is decided when a worker first uses one)."""
    tasks._WORKER_EXTRACTORS.clear()
    yield
    tasks._WORKER_EXTRACTORS.clear()


def extract(corpus: Path, store: Path, device: str = SLOW_DEVICE, names=NETWORKS, options=OPTIONS, **settings):
    return run_extract(str(corpus), str(store), names, options, device=device, **settings)


def rows_by_clip(store: Path, names=NETWORKS) -> dict[tuple[str, str], np.ndarray]:
    opened = open_store(store)
    return {(name, clip): opened.read(name, clip)[0] for name in names for clip in opened.clip_ids(name)}


@pytest.fixture(scope="module")
def one_at_a_time(demo_corpus, tmp_path_factory) -> dict:
    """Every demo clip's simulated rows, extracted one clip at a time (nothing shared, nothing concurrent)."""
    tasks._WORKER_EXTRACTORS.clear()
    store = tmp_path_factory.mktemp("sim") / "one.zarr"
    summary = extract(demo_corpus, store, workers=1, clips_in_flight=1)
    assert summary.ok
    return rows_by_clip(store)


def test_a_pass_waits_for_its_counted_flops_over_the_rate_plus_its_launches_with_the_gil_released():
    resnet = create("resnet50")
    resnet.setup(resolve_device(SLOW_DEVICE))
    queue = DeviceQueue(resnet.simulated.queue)
    counted, stop = [0], threading.Event()

    def count() -> None:  # pure Python: it runs only while no other thread holds the GIL
        while not stop.is_set():
            counted[0] += 1

    frames = np.random.default_rng(0).integers(0, 255, (4, 256, 341, 3), dtype=np.uint8)
    resnet.rows_of(frames[:1])  # plans the pass: one real forward pass on the CPU, counting its FLOPs
    busy = queue.busy_seconds()
    counter = threading.Thread(target=count)
    counter.start()
    try:
        cpu = time.thread_time()
        rows = resnet.rows_of(frames)
        cpu = time.thread_time() - cpu
    finally:
        stop.set()
        counter.join()
    assert rows.shape == (4, 2048) and np.all(rows < 0)
    (plan,) = resnet.model.plans.values()
    assert plan.flops == pytest.approx(2 * 4.089e9, rel=0.01)  # torchvision's ResNet50_Weights: 4.09 GMACs per image
    assert 100 < plan.kernels < 400
    expected = 4 * plan.flops / 0.5e12 + plan.kernels * 10e-6
    assert queue.busy_seconds() - busy == pytest.approx(expected, rel=1e-9)
    assert counted[0] > 1000  # the other thread kept running while the pass waited
    assert cpu < expected / 2  # and the pass waited asleep: a wait that spins in Python would burn its length in CPU


def test_the_video_networks_cost_what_their_model_zoo_states():
    """pytorchvideo's model zoo: SlowFast R50 8x8 65.7 GFLOPs (multiply-adds) per 256 x 256 view, I3D R50 37.5."""
    device = resolve_device(SLOW_DEVICE)
    for name, gmacs in (("slowfast_r50", 65.71), ("i3d", 37.53)):
        network = create(name, short_side=256) if name == "i3d" else create(name)
        network.setup(device)
        window = np.zeros((1, 64, 256, 256, 3), np.uint8)
        network.window_rows([window[0]])
        (plan,) = network.model.plans.values()
        crop = network.crop
        assert plan.flops / 2 == pytest.approx(gmacs * 1e9 * (crop / 256) ** 2, rel=0.05), name


def test_simulated_rows_are_marked_in_the_store_and_refused_by_training_and_prediction(demo_corpus, tmp_path):
    store = tmp_path / "s.zarr"
    summary = extract(demo_corpus, store, names=["resnet50", "colour"], options={"resnet50": {"fps": "1"}}, workers=1)
    assert summary.ok and "simulated GPU" in summary.gpus
    opened = open_store(store)
    assert opened.attrs("resnet50")["weights"] == "simulated" and opened.attrs("colour")["weights"] == "none"
    info = run_cli("store", "info", store)
    assert info.exit_code == 0 and "simulated" in info.stdout
    train = ("train", "lasso", store, "--labels", demo_corpus / "annotations.csv", "--target", "arousal", "--folds", "3")
    refused = run_cli(*train, "-f", "resnet50,colour", "--out", tmp_path / "run")
    assert refused.exit_code == 2 and "resnet50: rows of the simulated GPU" in refused.stderr
    trained = run_cli(*train, "-f", "colour", "--out", tmp_path / "colour")
    assert trained.exit_code == 0, trained.stderr  # the simulated run's colour rows are real features
    refused = run_cli("predict", tmp_path / "colour", demo_corpus, "--out", tmp_path / "p", "--device", "sim")
    assert refused.exit_code == 2 and "serves `mvfx extract` tests and benchmarks only" in refused.stderr


def test_clips_in_flight_get_their_own_rows_when_passes_are_shared(demo_corpus, tmp_path, one_at_a_time):
    store = tmp_path / "shared.zarr"
    summary = extract(demo_corpus, store, workers=1, clips_in_flight=3)
    assert summary.ok
    shared = {spec.name: e for (spec, *_), e in tasks._WORKER_EXTRACTORS.items()}
    assert all(shared[n].shared is not None and shared[n].shared.requests > shared[n].shared.passes for n in NETWORKS)
    together = rows_by_clip(store)
    assert together.keys() == one_at_a_time.keys()
    for key, rows in one_at_a_time.items():
        np.testing.assert_array_equal(together[key], rows, err_msg=str(key))


def test_a_clip_storing_its_blocks_gives_its_place_to_the_next_clip(demo_corpus, tmp_path, one_at_a_time, monkeypatch):
    """Two clips in flight: while the first two clips store their blocks, the third has started (its extractors run),
    and no more than two clips extract at once; the rows are each clip's own."""
    started, storers, extracting, most, lock = [], set(), [0], [0], threading.Lock()
    probe, stage, third_started = tasks.probe, tasks._stage, threading.Event()

    def counted_probe(path):
        with lock:
            started.append(path)
            extracting[0] += 1
            most[0] = max(most[0], extracting[0])
            if len(started) == 3:
                third_started.set()
        return probe(path)

    def storing(extractor, block, task, result):
        with lock:
            if result.clip_id not in storers:  # the clip's first block: it is done extracting
                storers.add(result.clip_id)
                extracting[0] -= 1
        if len(started) <= 2:  # one of the first two clips: the third starts meanwhile
            assert third_started.wait(30), "the third clip waited for a clip that was only storing"
        return stage(extractor, block, task, result)

    monkeypatch.setattr(tasks, "probe", counted_probe)
    monkeypatch.setattr(tasks, "_stage", storing)
    summary = extract(demo_corpus, tmp_path / "s.zarr", workers=1, clips_in_flight=2)
    assert summary.ok and len(started) == len(one_at_a_time) // len(NETWORKS) and most[0] == 2
    together = rows_by_clip(tmp_path / "s.zarr")
    assert together.keys() == one_at_a_time.keys()
    for key, rows in one_at_a_time.items():
        np.testing.assert_array_equal(together[key], rows, err_msg=str(key))


def test_a_clip_waiting_for_a_place_never_starts_once_the_run_has_stopped(demo_corpus, tmp_path, monkeypatch):
    """Two clips in flight, the disk full as the first clip stores: that clip gives its place up and a third clip
    starts meanwhile, as it should; the run stops when the first clip is committed, and the fourth clip, whose
    thread was waiting for a place, does not start when a place frees (it did, and the run waited for it)."""
    started, stage = [], tasks._stage

    def storing(extractor, block, task, result):
        if result.clip_id == Path(started[0]).stem:  # the first clip
            result.failures.append(tasks.Failure(extractor.name, "store", "StoreUnwritable", "disk full", errno.ENOSPC))
            return None
        time.sleep(0.3)  # the other clips take a while to store
        return stage(extractor, block, task, result)

    def probing(path):  # every clip but the first holds its place until the run has stopped
        started.append(path)
        if len(started) > 1:
            assert stopped.wait(30)
        return probe(path)

    def stop(places) -> None:
        real_stop(places)
        stopped.set()

    probe, real_stop, stopped = tasks.probe, ClipPlaces.stop, threading.Event()
    monkeypatch.setattr(tasks, "probe", probing)
    monkeypatch.setattr(tasks, "_stage", storing)
    monkeypatch.setattr(ClipPlaces, "stop", stop)
    with pytest.raises(MvfxError, match="clips not done"):
        extract(demo_corpus, tmp_path / "s.zarr", workers=1, clips_in_flight=2)
    stems = [Path(path).stem for path in started]  # the third: whichever waiting clip took the freed place first
    assert stems[:2] == ["clip_000", "clip_001"] and len(stems) == 3, stems


def test_clips_in_flight_get_their_own_rows_when_passes_are_not_shared(demo_corpus, tmp_path, one_at_a_time, monkeypatch):
    """The remote-cluster case of before: a worker that believed it ran one clip at a time ran three, through one
    network, without shared passes. Each clip must still get its own rows."""
    monkeypatch.setattr(tasks, "clips_in_flight_here", lambda task: 1)
    store = tmp_path / "unshared.zarr"
    assert extract(demo_corpus, store, workers=1, clips_in_flight=3).ok
    assert all(e.shared is None for e in tasks._WORKER_EXTRACTORS.values())
    together = rows_by_clip(store)
    for key, rows in one_at_a_time.items():
        np.testing.assert_array_equal(together[key], rows, err_msg=str(key))


OTHER_NETWORKS = ["flownets", "yolov5", "vggish", "musicnn", "faces", "face_expression"]
OTHER_OPTIONS = {"flownets": {"width": "128", "height": "64"}, "yolov5": {"imgsz": "320"}}


def test_every_other_network_gives_clips_in_flight_their_own_rows(demo_corpus, tmp_path):
    """The networks with no shared pass run concurrent passes of the clips in flight through one module; each clip
    must get the rows it gets alone. (The detectors find nothing in simulated outputs, so their rows are the same
    for every clip; flownets', vggish's and musicnn's are their inputs' fingerprints, one per clip.)"""
    alone, together = tmp_path / "alone.zarr", tmp_path / "together.zarr"
    assert extract(demo_corpus, alone, names=OTHER_NETWORKS, options=OTHER_OPTIONS, workers=1, clips_in_flight=1).ok
    tasks._WORKER_EXTRACTORS.clear()
    assert extract(demo_corpus, together, names=OTHER_NETWORKS, options=OTHER_OPTIONS, workers=1, clips_in_flight=3).ok
    assert all(e.shared is None for (spec, *_), e in tasks._WORKER_EXTRACTORS.items() if spec.name in OTHER_NETWORKS)
    one, concurrent = rows_by_clip(alone, OTHER_NETWORKS), rows_by_clip(together, OTHER_NETWORKS)
    assert concurrent.keys() == one.keys() and len(one) == 6 * len(OTHER_NETWORKS)
    for name in ("flownets", "vggish", "musicnn"):
        assert len({rows.tobytes() for (n, _), rows in one.items() if n == name}) == 6, name
    for key, rows in one.items():
        np.testing.assert_array_equal(concurrent[key], rows, err_msg=str(key))


def _sharing_in_worker() -> dict[str, bool]:
    return {spec.name: e.shared is not None for (spec, *_), e in tasks._WORKER_EXTRACTORS.items()}


@pytest.mark.slow
def test_each_worker_of_a_cluster_decides_sharing_from_its_own_threads(demo_corpus, tmp_path, one_at_a_time):
    """A 1-thread and a 3-thread `dask worker`: the run used to take the smallest (1) for every worker, so the
    3-thread worker ran three clips through one network without sharing its passes."""
    import cloudpickle
    from dask.distributed import Client
    from test_cluster import DASK, _free_port

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]
    procs += [subprocess.Popen([DASK, "worker", address, "--nthreads", str(n), "--no-dashboard", "--name", f"t{n}",
                                "--resources", "GPU=1"], **quiet) for n in (1, 3)]
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            store = tmp_path / "cluster.zarr"
            assert extract(demo_corpus, store, scheduler=address).ok
            decided = {info["name"]: client.run(_sharing_in_worker, workers=[addr])[addr]
                       for addr, info in client.scheduler_info()["workers"].items()}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    assert decided["t3"] == {"resnet50": True, "i3d": True}
    assert decided["t1"] in ({}, {"resnet50": False, "i3d": False})  # it may have had no clip at all
    together = rows_by_clip(store)
    for key, rows in one_at_a_time.items():
        np.testing.assert_array_equal(together[key], rows, err_msg=str(key))


def _run_with_deadline(seconds: float, **kwargs):
    """``extract(**kwargs)`` in a thread; its summary, or a failed test if it has not returned after ``seconds``."""
    out: dict = {}
    runner = threading.Thread(target=lambda: out.setdefault("summary", extract(**kwargs)), daemon=True)
    runner.start()
    runner.join(seconds)
    assert not runner.is_alive(), f"the run still waits after {seconds} s"
    return out["summary"]


def test_a_failure_after_a_shared_pass_fails_each_waiting_clip_in_bounded_time(demo_corpus, tmp_path, monkeypatch):
    """Handing the rows out fails (a bug after the pass): before, the model thread died and every clip waited forever."""
    def broken_split(*args, **kwargs):
        raise RuntimeError("the rows could not be handed out")

    monkeypatch.setattr(np, "split", broken_split)
    summary = _run_with_deadline(120, corpus=demo_corpus, store=tmp_path / "s.zarr", names=["resnet50", "colour"],
                                 options={"resnet50": {"fps": "2"}}, workers=1, clips_in_flight=3)
    failed = {clip: f for clip, f in summary.failures if f.extractor == "resnet50"}
    assert len(failed) == 6 and all("could not be handed out" in f.message for f in failed.values())
    assert summary.pairs_done == 6  # colour, for every clip


def test_a_pass_giving_another_number_of_rows_fails_every_clip_of_that_pass(demo_corpus, tmp_path, monkeypatch):
    from mvfx.extractors.frame_cnn import _ResNet50

    batch_rows = _ResNet50.batch_rows
    monkeypatch.setattr(_ResNet50, "batch_rows", lambda self, frames: np.concatenate([batch_rows(self, frames)] * 2)[:len(frames) + 1])
    summary = _run_with_deadline(120, corpus=demo_corpus, store=tmp_path / "s.zarr", names=["resnet50"],
                                 options={"resnet50": {"fps": "2"}}, workers=1, clips_in_flight=3)
    assert summary.pairs_done == 0 and len(summary.failures) == 6
    assert all("items gave" in f.message for _, f in summary.failures), summary.failures


def test_the_model_thread_is_replaced_after_a_failure_outside_a_pass(monkeypatch):
    from mvfx.extractors.batching import SharedForward

    shared = SharedForward(lambda items: items * 2, batch=4)
    take = SharedForward._take
    monkeypatch.setattr(SharedForward, "_take", lambda self: (_ for _ in ()).throw(RuntimeError("lost the queue")))
    with pytest.raises(RuntimeError, match="lost the queue"):
        shared(np.ones((2, 1)))
    monkeypatch.setattr(SharedForward, "_take", take)
    np.testing.assert_array_equal(shared(np.ones((2, 1))), np.full((2, 1), 2.0))


def test_the_memory_guard_halves_passes_that_run_out_of_simulated_memory(demo_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "FIRST_PIECE_FRAMES", None)  # whole pieces: each clip's 16 frames in one pass
    options = {"resnet50": {"fps": "4", "batch_size": "16"}}
    full = extract(demo_corpus, tmp_path / "full.zarr", device="sim:tflops=inf", names=["resnet50"], options=options,
                   workers=1, clips_in_flight=1)
    tasks._WORKER_EXTRACTORS.clear()
    tight = extract(demo_corpus, tmp_path / "tight.zarr", device="sim:tflops=inf,oom_items=4", names=["resnet50"],
                    options=options, workers=1, clips_in_flight=1)
    assert full.ok and tight.ok
    message = "resnet50: the GPU ran out of memory at {} items per forward pass (another process using it?); now at most {}"
    assert [n for n in tight.notices if "ran out of memory" in n] == [message.format(16, 8), message.format(8, 4)]
    a, b = rows_by_clip(tmp_path / "full.zarr", ["resnet50"]), rows_by_clip(tmp_path / "tight.zarr", ["resnet50"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_bad_simulated_device_or_clips_in_flight_on_a_cluster_is_one_line(demo_corpus, tmp_path):
    for device, problem in (("sim:tflops=-1", "must be > 0"), ("sim:speed=2", "unknown setting 'speed'"),
                            ("sim:oom_items=many", "is not a whole number")):
        result = run_cli("extract", demo_corpus, "--store", tmp_path / "s.zarr", "-e", "resnet50", "--device", device)
        assert result.exit_code == 2 and problem in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli("extract", demo_corpus, "--store", tmp_path / "s.zarr", "--scheduler", "tcp://127.0.0.1:9",
                     "--clips-in-flight", "2")
    assert result.exit_code == 2 and "--clips-in-flight applies to the workers mvfx starts" in result.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_the_queue_is_shared_by_processes(tmp_path):
    """Two processes' passes on one simulated device run one after the other, as on one GPU."""
    device = SimulatedDevice(launch_us=20000).resolve()  # one kernel: 20 ms
    code = ("import sys, time, pathlib\nfrom mvfx.extractors.simulated_device import DeviceQueue\n"
            "ready, deadline = pathlib.Path(sys.argv[2]), time.monotonic() + 60; (ready / sys.argv[3]).touch()\n"
            "while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline: time.sleep(0.001)\n"  # both start
            "print([(sys.argv[3], *DeviceQueue(sys.argv[1]).run(0.0, kernels=1)) for _ in range(5)])")  # together
    procs = [subprocess.Popen([sys.executable, "-c", code, device.queue, str(tmp_path), name], stdout=subprocess.PIPE, text=True)
             for name in "AB"]
    try:
        passes = sorted((p for proc in procs for p in eval(proc.communicate(timeout=90)[0])), key=lambda p: p[1])
    finally:
        for proc in procs:
            proc.kill()
    assert len(passes) == 10 and all(end - begin == pytest.approx(0.02) for _, begin, end in passes)
    assert all(later[1] >= earlier[2] - 1e-9 for earlier, later in itertools.pairwise(passes))  # never two at once
    # Queued together, the passes run back to back (0.2 s), unless a process wakes late to queue its next one: a
    # loaded CI machine woke one 60 ms late once. A queue that added a wait per pass would take 0.4 s or more.
    assert 0.2 - 1e-6 <= passes[-1][2] - passes[0][1] < 0.35
    assert {name for name, *_ in passes[:4]} == {"A", "B"}  # each waited for the other's passes
    assert DeviceQueue(device.queue).busy_seconds() == pytest.approx(0.2)


def test_passes_are_planned_one_at_a_time_in_a_process():
    """Planning a pass runs torch's dispatch modes, whose state is the process's: two threads planning at once
    crashed a Dask worker in the interpreter. A second plan waits until the first is done."""
    import torch

    from mvfx.extractors.simulated_device import plan_pass

    inside, release, second_ran, order = threading.Event(), threading.Event(), threading.Event(), []

    class Held(torch.nn.Module):
        def forward(self, x):
            order.append("first starts")
            inside.set()
            release.wait(timeout=10)
            order.append("first ends")
            return x * 2

    class Quick(torch.nn.Module):
        def forward(self, x):
            order.append("second")
            second_ran.set()
            return x + 1

    first = threading.Thread(target=plan_pass, args=(Held(), (torch.ones(2, 3),)))
    first.start()
    assert inside.wait(timeout=10)
    second = threading.Thread(target=plan_pass, args=(Quick(), (torch.ones(2, 3),)))
    second.start()
    assert not second_ran.wait(timeout=2)  # waiting for the first plan
    release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert order == ["first starts", "first ends", "second"]


def test_a_network_holding_a_simulated_one_plans_both_in_one_thread():
    """The planning lock is re-entrant: planning an outer network plans the simulated network it calls."""
    import torch

    from mvfx.extractors.simulated_device import plan_pass, simulated_network

    inner = simulated_network(torch.nn.Linear(3, 4), SimulatedDevice().resolve(), "inner", "bf16")

    class Outer(torch.nn.Module):
        def forward(self, x):
            return inner(x).sum(dim=1)

    done = []
    planner = threading.Thread(target=lambda: done.append(plan_pass(Outer(), (torch.ones(2, 3),))), daemon=True)
    planner.start()
    planner.join(timeout=30)
    assert done and done[0].outputs is not None
