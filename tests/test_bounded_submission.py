"""Tasks go out in bounded batches: a real Dask scheduler never holds more than the bound, and every result arrives."""
from __future__ import annotations

import threading
import time

import pytest

from mvfx.pipeline.executor import SUBMITTED_PER_THREAD, DaskExecutor, InProcessExecutor

N_TASKS = 40


def _work(task: int, on_progress=None) -> int:
    """A clip task stand-in: busy for a moment, then its result; task 13 hits a bug outside the clip's error handling."""
    time.sleep(0.02)
    if task == 13:
        raise RuntimeError("boom")
    return task * 10


class _Drawn:
    """The task iterable, counting how many tasks the executor has taken from it."""

    def __init__(self, n: int) -> None:
        self.n, self.taken = n, 0

    def __iter__(self):
        for task in range(self.n):
            self.taken += 1
            yield task


def _lost(task, exc) -> str:
    return f"lost {task}: {type(exc).__name__}"


def _active_on_scheduler(dask_scheduler) -> int:
    """Tasks the scheduler holds that are not finished: waiting, queued, processing, or with no worker."""
    return sum(ts.state not in ("memory", "erred", "released", "forgotten") for ts in dask_scheduler.tasks.values())


@pytest.fixture(scope="module")
def scheduler_address():
    """A real scheduler with two one-thread workers, in this process's threads (starts in about a second)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_dask_never_holds_more_than_the_bound_and_every_result_arrives(scheduler_address):
    executor = DaskExecutor(scheduler=scheduler_address)
    try:
        bound = executor.submission_limit()
        assert bound == SUBMITTED_PER_THREAD * 2
        tasks, results, seen_active = _Drawn(N_TASKS), [], []
        for result in executor.map_unordered(_work, tasks, on_error=_lost):
            results.append(result)
            seen_active.append(executor.client.run_on_scheduler(_active_on_scheduler))  # tasks the scheduler holds
            # taken from the iterable only as room frees up: at most the bound submitted, plus the finished batch
            # (at most the bound again) being handed on while its replacements already run
            assert tasks.taken - len(results) <= 2 * bound
        assert max(seen_active) <= bound
        assert max(seen_active) >= 2  # both workers had work: the bound does not starve the cluster
        assert sorted(r for r in results if isinstance(r, int)) == [t * 10 for t in range(N_TASKS) if t != 13]
        assert [r for r in results if isinstance(r, str)] == ["lost 13: RuntimeError"]
        deadline = time.monotonic() + 30  # the client lets go of finished futures on its event loop, soon after
        while executor.client.futures and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not executor.client.futures
    finally:
        executor.close()


def test_in_process_threads_hold_at_most_the_bound(monkeypatch):
    executor = InProcessExecutor(clips_in_flight=3)
    bound = SUBMITTED_PER_THREAD * 3
    running, most = 0, 0
    lock = threading.Lock()

    def work(task: int, on_progress=None) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return _work(task)
        finally:
            with lock:
                running -= 1

    tasks, results = _Drawn(N_TASKS), []
    for result in executor.map_unordered(work, tasks, on_error=_lost):
        results.append(result)
        assert tasks.taken - len(results) <= 2 * bound
    # a thread more than the clips in flight: process_clip takes one of 3 places (executor.clip_place), this work not
    assert most <= 3 + 1 and len(results) == N_TASKS and "lost 13: RuntimeError" in results
