"""Process-wide settings: made for good only in the workers mvfx starts, borrowed and put back everywhere else.

A notebook that runs an extraction, or `mvfx predict`'s extraction, must get its thread counts back; the workers of
mvfx's own local cluster keep theirs (and glibc's reuse of large blocks) for their life; the summary says which.
"""
from __future__ import annotations

import subprocess
import threading

import cv2
import pytest
import torch
from helpers import MVFX
from threadpoolctl import threadpool_info

from mvfx.pipeline import tasks, threads
from mvfx.pipeline.executor import InProcessExecutor, clip_place
from mvfx.pipeline.run import run_extract


def blas_threads() -> dict[str, int]:
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}


def test_an_in_process_run_puts_the_thread_counts_back(demo_corpus, tmp_path):
    tasks._WORKER_EXTRACTORS.clear()
    before_torch, before_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(3)
    cv2.setNumThreads(5)
    before_blas = blas_threads()  # torch's OpenMP pool among them, now at 3
    try:
        summary = run_extract(str(demo_corpus / "clip_000.mp4"), str(tmp_path / "s.zarr"), ["colour", "resnet50"],
                              {"resnet50": {"fps": "1"}}, workers=1, random_weights=True)
        assert summary.ok
        after_blas = {path: n for path, n in blas_threads().items() if path in before_blas}  # (the run loads more)
        assert (torch.get_num_threads(), cv2.getNumThreads(), after_blas) == (3, 5, before_blas)
        assert summary.settings == ["torch, BLAS and OpenCV threads set while mvfx's work runs, then put back as they "
                                    "were; glibc's allocator left as it was"]
    finally:
        torch.set_num_threads(before_torch)
        cv2.setNumThreads(before_cv2)
        tasks._WORKER_EXTRACTORS.clear()


def test_the_workers_mvfx_starts_keep_their_settings_and_say_so(demo_corpus, tmp_path):
    before = (torch.get_num_threads(), cv2.getNumThreads())
    summary = run_extract(str(demo_corpus), str(tmp_path / "s.zarr"), ["colour"], workers=2)
    assert summary.ok and "local dask cluster" in summary.executor
    (said,) = summary.settings
    assert said.startswith("workers mvfx started: torch, BLAS and OpenCV at 1 thread(s) for the worker's life; ")
    assert said.endswith(("glibc reuses freed blocks of up to 256 MiB", "(not glibc)"))
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before  # this process was not mvfx's to change


def test_the_mvfx_program_lets_glibc_reuse_large_blocks_in_its_own_process(demo_corpus, tmp_path):
    """An in-process `mvfx extract` runs in a process that is mvfx's from start to exit: it sets glibc's reuse of
    large blocks there as in its workers, and says so; ``main`` called by another program (above) leaves it alone."""
    proc = subprocess.run([*MVFX, "extract", str(demo_corpus / "clip_000.mp4"), "--store", str(tmp_path / "s.zarr"),
                           "-e", "colour", "-j", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr).split())  # rich wraps the summary's lines
    outcomes = ("glibc reuses freed blocks of up to 256 MiB", "allocator unchanged (not glibc)", "glibc refused")
    assert any(f"then put back as they were; {outcome}" in said for outcome in outcomes), said


def test_a_refused_allocator_setting_is_said(monkeypatch):
    def mallopt(parameter: int, value: int) -> int:  # glibc's answer to a value it does not take
        return 0

    class RefusingGlibc:
        pass

    glibc = RefusingGlibc()
    glibc.mallopt = mallopt
    monkeypatch.setattr(threads.ctypes, "CDLL", lambda name: glibc)
    monkeypatch.setattr(threads.os, "confstr", lambda name: "glibc 2.36")
    assert threads.reuse_large_blocks() == "glibc refused M_MMAP_THRESHOLD=268435456: allocator unchanged"


def test_clips_queued_when_a_run_stops_never_start():
    """The store became unwritable after the first clip: the clips waiting in the executor's queue are cancelled."""
    started, release = [], threading.Event()

    def clip(task: int, on_progress) -> int:
        with clip_place():  # as process_clip: a place among the 3 in flight (the pool has a thread more)
            started.append(task)
            if task:
                release.wait(10)
        return task

    results = InProcessExecutor(clips_in_flight=3).map_unordered(clip, range(20), on_error=lambda task, exc: None)
    assert next(results) == 0
    threading.Timer(0.5, release.set).start()
    results.close()  # what the run does when committing raises StoreUnwritable
    # those running and the first one's successor; not 4 (its thread waited for a place), 5, 6
    assert {0, 1, 2} <= set(started) <= {0, 1, 2, 3}


@pytest.mark.parametrize("clips_in_flight", [1, 3])
def test_borrowed_settings_hold_while_any_clip_runs(clips_in_flight):
    before = cv2.getNumThreads()
    budget = threads.ThreadBudget(per_worker=1, clips_in_flight=clips_in_flight)
    with threads.threads_limited(budget):
        with threads.threads_limited(budget):
            assert cv2.getNumThreads() == 1
        assert cv2.getNumThreads() == 1  # another clip still runs
    assert cv2.getNumThreads() == before
