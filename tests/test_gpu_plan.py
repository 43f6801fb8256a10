"""GPU nodes: the memory plan with a simulated device, the thread budget, and forward passes shared across clips.

The device-memory figure is simulated (``device_free``), so these run on the CPU; what needs a real GPU
(NVDEC, bf16) is in test_decode_backend.py and benchmarks/gpu.py.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from mvfx.extractors import create
from mvfx.extractors.batching import SharedForward
from mvfx.extractors.torch_base import TorchExtractor
from mvfx.extractors.torch_device import device_free_memory, resolve_device
from mvfx.media.probe import ClipInfo
from mvfx.pipeline.streaming import memory_needed, piece_sizes
from mvfx.pipeline.threads import ThreadBudget

ALL_13 = ["colour", "emobase", "logmel_phase", "vggish", "resnet50", "places365", "slowfast_r50", "i3d", "flownets",
          "yolov5", "faces", "face_expression", "shots"]
GIB = 2**30


def ten_minute_720p() -> ClipInfo:
    return ClipInfo("/corpus/concert.mp4", 10**9, "sha256:0", 600.0, True, True, 29.97, 1280, 720, "h264", 48000, 2, "aac")


def on_simulated_gpu(names: list[str], free_bytes: int, gpu_workers: int, **options) -> list:
    """Extractors as a worker on a simulated GPU with ``free_bytes`` free sizes them (``device_free_memory`` reads the
    simulated figure as set-up does; no network is built)."""
    device = resolve_device(f"sim:memory_gib={free_bytes / GIB}")
    extractors = [create(n, **options) for n in names]
    for e in extractors:
        e.gpu_workers = gpu_workers
        if isinstance(e, TorchExtractor):
            e.target_device, e.device_free = device, device_free_memory(device)
    return extractors


def test_the_gpu_memory_plan_admits_a_ten_minute_720p_clip_at_j4_on_a_128_gb_node():
    """The issue's refusal: at -j 4 the window models' automatic GPU batch (hundreds of windows) was counted as
    held in host memory. Batches are now bounded by the device's part, a cap, and the clip's own windows."""
    extractors = on_simulated_gpu(ALL_13, free_bytes=140 * GIB, gpu_workers=4)
    budget = ThreadBudget(per_worker=16 // 4, clips_in_flight=3)
    clip_may_use = 128 * GIB // 4 // 2 // budget.clips_in_flight  # default_clip_memory on such a node, per clip in flight
    needed, worst = memory_needed(ten_minute_720p(), extractors, decoder_threads=budget.per_decoder, lanes=True)
    assert needed < clip_may_use, worst
    by_name = {e.name: e for e in extractors}
    assert by_name["slowfast_r50"].batch_size == 16  # a quarter of 140 GiB, in 4 workers' parts, holds 22 windows of 400 MiB
    assert by_name["resnet50"].batch_size == 128  # the same part holds 149 frames of 60 MiB; a power of two below
    assert by_name["i3d"].batch_size == 32  # 44 windows would fit: the cap binds
    assert needed < 3 * GIB, worst  # refused at 47.0 GiB before


def test_batches_sized_from_different_free_memory_readings_keep_pieces_small():
    """Seen on an H200: ResNet-50 and Places365 sized from readings before and after the other's model loaded got
    145 and 146 frames; pieces (a multiple of both) became 21170 frames and every 60 s 720p clip 'needed' 44 GiB."""
    resnet, places = on_simulated_gpu(["resnet50", "places365"], free_bytes=140 * GIB, gpu_workers=4)
    places.device_free = 140 * GIB - 300 * 2**20
    one_minute = ClipInfo("/c/a.mp4", 1, "sha256:0", 60.0, True, True, 30.0, 1280, 720)
    needed, worst = memory_needed(one_minute, [resnet, places], decoder_threads=4)
    assert piece_sizes([resnet, places]) == {resnet.input: max(resnet.request_size, places.request_size)}
    assert needed < GIB, worst


def test_a_window_batch_never_exceeds_the_clips_own_windows():
    short = ClipInfo("/c/a.mp4", 1, "sha256:0", 6.0, True, False, 30.0, 1280, 720)
    slowfast = create("slowfast_r50", batch_size=8)
    assert slowfast.clip_batch(short) == len(slowfast.windows(180)) == 2
    assert slowfast.frames_held(16, short) == 64 + 64 + 16
    assert create("slowfast_r50").clip_batch(ten_minute_720p()) == 1  # the CPU batch is unchanged


def test_on_a_gpu_a_clip_asks_for_small_passes_that_the_shared_pass_merges():
    """A clip's stream hands the GPU the CPU's batch at a time (a window, 16 frames): its work reaches the device as
    it is decoded, not when a 256-frame batch is full; shared passes merge the clips' requests up to the GPU batch."""
    slowfast, resnet = on_simulated_gpu(["slowfast_r50", "resnet50"], free_bytes=80 * GIB, gpu_workers=1)
    assert (slowfast.batch_size, slowfast.request_size, slowfast.clip_batch(ten_minute_720p())) == (32, 1, 1)
    assert (resnet.batch_size, resnet.request_size) == (256, 16)
    assert piece_sizes([resnet]) == {resnet.input: 16}
    (chosen,) = on_simulated_gpu(["resnet50"], free_bytes=80 * GIB, gpu_workers=1, batch_size=64)
    assert (chosen.batch_size, chosen.request_size) == (64, 64)  # a batch size the user set is used as it is


def test_the_thread_budget_shares_cores_among_workers_and_clips():
    budget = ThreadBudget(per_worker=16 // 4, clips_in_flight=3)
    assert (budget.per_worker, budget.per_decoder) == (4, 1)
    assert ThreadBudget(per_worker=16, clips_in_flight=3).per_decoder == 5
    assert "4 per worker process" in budget.describe() and "3 clip(s) in flight" in budget.describe()


def test_a_worker_never_has_more_clips_in_flight_than_the_job_gives_it(demo_corpus):
    """4 clips on 4 GPU workers (the GPU benchmark's -j 4): one clip each, decoded with the worker's 4 cores, not 1."""
    from mvfx.pipeline.executor import clips_per_worker
    from mvfx.pipeline.plan import RunSettings, plan

    assert clips_per_worker(3, n_tasks=4, workers=4) == 1
    assert ThreadBudget(per_worker=16 // 4, clips_in_flight=clips_per_worker(3, 4, 4)).per_decoder == 4
    assert clips_per_worker(3, n_tasks=9, workers=4) == 3 and clips_per_worker(3, n_tasks=1000, workers=4) == 3
    assert clips_per_worker(3, n_tasks=0, workers=4) == 1
    two_clips = RunSettings(str(demo_corpus / "clip_00[0-1].mp4"), "unused.zarr", ("colour",), workers=1, clips_in_flight=3)
    assert plan(two_clips).resources.clips_in_flight == 2  # in-process: one worker


def test_shared_forward_merges_waiting_requests_and_returns_each_its_own_rows():
    calls, started, release = [], threading.Event(), threading.Event()

    def forward(items: np.ndarray) -> np.ndarray:
        calls.append(len(items))
        started.set()
        release.wait(5)  # the first pass stays busy until the other requests are waiting
        return items.reshape(len(items), -1).sum(axis=1, keepdims=True)

    shared = SharedForward(forward, batch=16, name="sum")
    requests = {k: np.full((k, 2, 2), k, np.float32) for k in (1, 2, 3, 4)}
    out = {}
    first = threading.Thread(target=lambda: out.__setitem__(1, shared(requests[1])))
    first.start()
    assert started.wait(5)
    others = [threading.Thread(target=lambda k=k: out.__setitem__(k, shared(requests[k]))) for k in (2, 3, 4)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    while shared.requests < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in (first, *others):
        t.join(5)
    assert calls == [1, 9]  # the three that waited went through one pass together
    for k, rows in out.items():
        np.testing.assert_array_equal(rows, np.full((k, 1), 4 * k, np.float32))


def test_shared_forward_gives_the_error_to_every_caller_of_the_failed_batch():
    def forward(items: np.ndarray) -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    shared = SharedForward(forward, batch=4)
    with pytest.raises(RuntimeError, match="out of memory"):
        shared(np.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError):  # the model thread still serves
        shared(np.zeros((1, 3), np.float32))


def test_clips_in_flight_give_the_rows_of_clip_by_clip_extraction(demo_corpus, tmp_path):
    """Three clips in flight in one process, their windows and frames merged into shared forward passes, store the
    same rows as one clip at a time, within the tolerance of two thread counts (test_visual: relative 1e-5)."""
    from mvfx.pipeline import tasks
    from mvfx.pipeline.run import run_extract
    from mvfx.stores import open_store

    names = ["resnet50", "i3d", "colour"]
    options = {"resnet50": {"fps": "1"}, "i3d": {"fps": "8", "window_frames": "8", "stride_frames": "8"}}
    stores = {}
    for in_flight in (1, 3):
        tasks._WORKER_EXTRACTORS.clear()  # set up afresh: sharing is decided when an extractor is built
        stores[in_flight] = tmp_path / f"in_flight_{in_flight}.zarr"
        summary = run_extract(str(demo_corpus / "clip_00[0-2].mp4"), str(stores[in_flight]), names, options, workers=1,
                              random_weights=True, clips_in_flight=in_flight)
        assert summary.ok and "in flight" in summary.threads
    shared = {spec.name: e for (spec, *_), e in tasks._WORKER_EXTRACTORS.items()}
    for name in ("resnet50", "i3d"):
        assert shared[name].shared is not None and shared[name].shared.requests > 0
    one, three = open_store(stores[1]), open_store(stores[3])
    for name in names:
        for clip_id in sorted(one.clip_ids(name)):
            a, b = one.read(name, clip_id), three.read(name, clip_id)
            np.testing.assert_array_equal(a[1], b[1])
            np.testing.assert_allclose(b[0], a[0], rtol=0, atol=1e-5 * max(1.0, float(np.abs(a[0]).max())))
    tasks._WORKER_EXTRACTORS.clear()


def _out_of_memory_above(max_items: int, calls: list[int]):
    """A forward pass on a GPU with room for ``max_items`` items: more raise what CUDA raises then."""
    import torch

    def forward(items):
        calls.append(len(items))
        if len(items) > max_items:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.asarray(items, np.float32)[:, None] * 2

    return forward


def test_a_pass_that_runs_out_of_gpu_memory_is_run_again_in_halves_and_later_passes_stay_small():
    from mvfx.extractors.torch_device import MemoryGuard

    guard, calls = MemoryGuard("resnet50"), []
    forward = _out_of_memory_above(3, calls)
    items = np.arange(10)
    expected = np.arange(10, dtype=np.float32)[:, None] * 2
    np.testing.assert_array_equal(guard(forward, items), expected)
    assert calls == [10, 5, 3, 2, 3, 2] and guard.limit == 3
    notices, seconds = guard.drain()
    assert notices == [
        "resnet50: the GPU ran out of memory at 10 items per forward pass (another process using it?); now at most 5",
        "resnet50: the GPU ran out of memory at 5 items per forward pass (another process using it?); now at most 3",
    ]
    assert seconds > 0 and guard.drain() == ([], 0.0)
    calls.clear()
    np.testing.assert_array_equal(guard(forward, items), expected)
    assert calls == [3, 3, 3, 1] and guard.drain()[0] == []  # no second try at a size that did not fit


def test_the_guard_splits_frame_pairs_with_their_shared_frame_and_joins_lists():
    import torch

    from mvfx.extractors.torch_device import MemoryGuard

    def pair_rows(frames: np.ndarray) -> np.ndarray:  # N frames -> N - 1 rows, as FlowNetS
        if len(frames) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return (frames[1:] - frames[:-1])[:, None].astype(np.float32)

    frames = np.arange(12) ** 2
    np.testing.assert_array_equal(MemoryGuard("flownets")(pair_rows, frames, overlap=1), np.diff(frames)[:, None])

    def per_frame_lists(frames: np.ndarray) -> list[np.ndarray]:  # YOLO: detections per frame
        if len(frames) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [np.full((k % 3, 6), k, np.float32) for k in frames]

    detections = MemoryGuard("yolov5")(per_frame_lists, np.arange(7))
    assert [len(d) for d in detections] == [k % 3 for k in range(7)] and [int(d[0, 0]) for d in detections if len(d)] == [1, 2, 4, 5]


def test_cudnn_and_cublas_allocation_failures_count_as_out_of_memory_and_other_errors_do_not():
    from mvfx.extractors.torch_device import MemoryGuard

    def fails_above_two(message: str):
        def forward(items):
            if len(items) > 2:
                raise RuntimeError(message)
            return np.asarray(items, np.float32)[:, None]
        return forward

    guard = MemoryGuard("vggish")
    assert guard(fails_above_two("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), np.arange(4)).ravel().tolist() == [0, 1, 2, 3]
    assert guard.limit == 2
    with pytest.raises(RuntimeError, match="size mismatch"):
        MemoryGuard("vggish")(fails_above_two("size mismatch"), np.arange(4))


def test_one_item_that_does_not_fit_still_fails():
    import torch

    from mvfx.extractors.torch_device import MemoryGuard

    with pytest.raises(torch.cuda.OutOfMemoryError):
        MemoryGuard("i3d")(_out_of_memory_above(0, []), np.arange(1))


def test_a_busy_gpu_costs_a_notice_not_the_clip(demo_corpus):
    """Another job fills the GPU after set-up: ResNet-50's 8-frame pass runs out of memory. The clip's rows are
    those of an idle GPU (within the thread-count tolerance), and the run summary says what happened."""
    import torch
    from helpers import random_extractor

    from mvfx.media.probe import probe
    from mvfx.pipeline.streaming import stream_pass

    class FilledGpu(torch.nn.Module):
        def __init__(self, model: torch.nn.Module, max_items: int) -> None:
            super().__init__()
            self.model, self.max_items = model, max_items

        def forward(self, x):
            if x.shape[0] > self.max_items:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.17 GiB")
            return self.model(x)

    info = probe(str(demo_corpus / "clip_000.mp4"))
    idle = stream_pass(info, [random_extractor("resnet50")], {})
    busy_extractor = random_extractor("resnet50")
    busy_extractor.model = FilledGpu(busy_extractor.model, max_items=4)
    busy = stream_pass(info, [busy_extractor], {})
    assert not busy.errors and len(busy.blocks["resnet50"].values) == 8
    a, b = idle.blocks["resnet50"].values, busy.blocks["resnet50"].values
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.abs(a).max()))
    assert busy.notices == ["resnet50: the GPU ran out of memory at 8 items per forward pass (another process using "
                            "it?); now at most 4"]


def test_workers_take_the_gpus_of_a_node_in_turn():
    """An 8-GPU node at -j 16: worker k on GPU k mod 8, two workers per GPU, each sizing its batches to half a GPU."""
    from mvfx.pipeline.gpus import GpuShare, plan_gpus

    share = plan_gpus("cuda", workers=16, remote=False, visible=8)
    assert share == GpuShare(gpus=8, workers_per_gpu=2)
    assert [share.device_for("cuda", rank) for rank in (0, 1, 7, 8, 15)] == ["cuda:0", "cuda:1", "cuda:7", "cuda:0", "cuda:7"]
    assert share.describe("cuda", 16) == "8 GPUs (cuda:0-7) taken in turn by 16 worker processes, 2 per GPU"
    assert plan_gpus("cuda", workers=3, remote=False, visible=8) == GpuShare(3, 1)  # more GPUs than workers
    pinned = plan_gpus("cuda:2", workers=4, remote=False, visible=8)
    assert pinned == GpuShare(1, 4) and pinned.device_for("cuda:2", 3) == "cuda:2"
    assert pinned.describe("cuda:2", 4) == "cuda:2, shared by 4 worker process(es)"
    remote = plan_gpus("cuda", workers=4, remote=True, visible=8)  # one worker per GPU, pinned by its start
    assert remote == GpuShare(1, 1, remote=True) and remote.device_for("cuda", 3) == "cuda"
    assert remote.describe("cuda", 4) == "cuda on each of 4 workers, the GPU their start gave them (CUDA_VISIBLE_DEVICES)"
    assert plan_gpus("cpu", workers=4, remote=False, visible=0).device_for("cpu", 3) == "cpu"
    assert GpuShare(1, 1).device_for("cuda", 5) == "cuda"  # one GPU: torch's default device, as before


def _rank_and_name(_: int) -> tuple[int, object]:
    from distributed import get_worker

    from mvfx.pipeline.gpus import local_rank

    return local_rank(), get_worker().name


def test_a_local_cluster_numbers_its_workers_from_zero():
    from mvfx.pipeline.executor import DaskExecutor
    from mvfx.pipeline.gpus import local_rank

    assert local_rank() == 0  # in-process
    executor = DaskExecutor(workers=2)
    try:
        client = executor.client
        addresses = sorted(client.scheduler_info()["workers"])
        futures = [client.submit(_rank_and_name, k, pure=False, workers=[a], allow_other_workers=False)
                   for k, a in enumerate(addresses)]  # one task on each worker
        seen = client.gather(futures)
    finally:
        executor.close()
    assert all(rank == name for rank, name in seen) and sorted(rank for rank, _ in seen) == [0, 1]


def test_a_cached_extractor_is_shared_once_a_later_run_has_clips_in_flight(tmp_path):
    """In one process, a 1-clip run and then a 3-clip run: the second must merge its passes (its clips' threads
    would otherwise call SlowFast/I3D, whose hook keeps state, at once)."""
    from mvfx.pipeline import tasks
    from mvfx.pipeline.corpus import ClipSource

    spec = tasks.ExtractorSpec("resnet50", (("fps", "1"),), random_weights=True)
    tasks._WORKER_EXTRACTORS.clear()
    try:
        clip = ClipSource(str(tmp_path / "a.mp4"), "a")
        one = tasks.ClipTask(clip, (spec,), staging=None, budget=ThreadBudget(2, clips_in_flight=1))
        three = tasks.ClipTask(clip, (spec,), staging=None, budget=ThreadBudget(2, clips_in_flight=3))
        first = tasks.worker_extractor(spec, one, "cpu")
        assert not first.sharing and first.shared is None
        again = tasks.worker_extractor(spec, three, "cpu")
        assert again is first and again.sharing and again.shared is not None
    finally:
        tasks._WORKER_EXTRACTORS.clear()


def test_remote_gpu_tasks_ask_for_their_clip_s_part_of_a_worker_s_gpu():
    """Workers started with --resources GPU=1 and 3 threads run 3 GPU clips at once, not one."""
    from dask.distributed import LocalCluster

    from mvfx.pipeline.executor import DaskExecutor

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None,
                      resources={"GPU": 1}) as cluster:
        executor = DaskExecutor(scheduler=cluster.scheduler_address, resources={"GPU": 1})
        try:
            assert executor.clips_in_flight == 3 and executor.resources == {"GPU": 1 / 3}
        finally:
            executor.close()


def test_gpu_clips_on_a_cluster_without_gpu_workers_are_refused_not_left_waiting():
    from dask.distributed import LocalCluster

    from mvfx.media.errors import MvfxError
    from mvfx.pipeline.executor import DaskExecutor

    with (LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
          pytest.raises(MvfxError, match=r"declares the GPU resource .* --resources GPU=1")):
        DaskExecutor(scheduler=cluster.scheduler_address, resources={"GPU": 1})
