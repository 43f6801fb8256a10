"""Where clip tasks run: in this process, on a local Dask cluster, or on an existing one.

Every backend yields results as they complete, so the single writer can
commit each clip as soon as it is done. A task lost with its worker (Dask
retries it elsewhere first) comes back as a whole-clip failure, never as an
exception that stops the run.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mvfx.media.errors import MvfxError, one_line


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class InProcessExecutor:
    """Run tasks here, no start-up cost. A function with ``stages = (prepare, finish)`` is pipelined:
    a helper thread prepares task i+1 (decoding, which FFmpeg runs without the GIL) while this
    thread finishes task i (the extractors), so neither the CPU nor a GPU waits for decoding."""

    description = "in-process"

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any]) -> Iterator:
        stages = getattr(fn, "stages", None)
        if stages is None:
            for task in tasks:
                yield fn(task)
            return
        prepare, finish = stages
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mvfx-decode") as pool:
            pending = None
            for task in tasks:
                upcoming = pool.submit(prepare, task)
                if pending is not None:
                    yield finish(pending.result())
                pending = upcoming
            if pending is not None:
                yield finish(pending.result())

    def close(self) -> None:
        pass


class DaskExecutor:
    """Run tasks on Dask distributed: a new local cluster or an existing scheduler address."""

    def __init__(self, workers: int = 0, scheduler: str | None = None, resources: dict[str, float] | None = None) -> None:
        from dask.distributed import Client, LocalCluster

        self.resources = resources or None
        self.cluster = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout="10s")
                self.description = f"dask cluster at {scheduler} ({len(self.client.scheduler_info()['workers'])} workers)"
            else:
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    resources=self.resources,
                )
                self.client = Client(self.cluster)
                self.description = f"local dask cluster ({workers} worker processes)"
        except OSError as exc:
            raise MvfxError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {one_line(exc)}") from None

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any]) -> Iterator:
        from dask.distributed import as_completed

        futures = {}
        for task in tasks:
            futures[self.client.submit(fn, task, pure=False, resources=self.resources)] = task
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                yield future.result()
            except Exception as exc:  # the worker died or the task could not run there
                yield on_error(task, exc)
            finally:
                future.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(workers: int | None, n_tasks: int, scheduler: str | None, resources: dict[str, float] | None = None):
    """Pick a backend: an explicit scheduler, else a local cluster unless the job is tiny or workers == 1."""
    if scheduler:
        return DaskExecutor(scheduler=scheduler, resources=resources)
    n = workers if workers else min(local_cores(), n_tasks)
    if n <= 1 or n_tasks <= 2:
        return InProcessExecutor()
    return DaskExecutor(workers=n, resources=resources)
