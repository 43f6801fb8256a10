"""Where clip tasks run: in this process, on a local Dask cluster, or on an existing one.

Every backend yields results as they complete, so the single writer can
commit each clip as soon as it is done, and reports each clip's decoding
progress (``on_progress``; from Dask workers as scheduler events). A task
lost with its worker comes back as a whole-clip failure, never as an
exception that stops the run. A local cluster gives each worker an equal
share of the machine's memory as its limit; each clip is held to half of
its worker's limit before it is opened (``streaming.memory_needed``), so
one oversized clip is a failures row, not a worker killed with its
neighbours' work.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mvfx.media.errors import MvfxError, one_line


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


ProgressSink = Callable[[str, float, float], None]  # (clip id, decoded seconds, clip seconds)
PROGRESS_TOPIC = "mvfx-progress"


class InProcessExecutor:
    """Run tasks here, one after another, with no start-up cost (decoding overlaps extraction inside a task)."""

    description = "in-process"

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any],
                      on_progress: ProgressSink | None = None) -> Iterator:
        for task in tasks:
            yield fn(task, on_progress)

    def close(self) -> None:
        pass


def publish_progress(clip_id: str, decoded_s: float, duration_s: float) -> None:
    """Progress of a clip on a Dask worker, sent to the client as a scheduler event (``PROGRESS_TOPIC``)."""
    from distributed import get_worker

    get_worker().log_event(PROGRESS_TOPIC, (clip_id, decoded_s, duration_s))


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
                    resources=self.resources, memory_limit=worker_memory_limit(workers),
                )
                self.client = Client(self.cluster)
                self.description = f"local dask cluster ({workers} worker processes)"
        except OSError as exc:
            raise MvfxError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {one_line(exc)}") from None

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any],
                      on_progress: ProgressSink | None = None) -> Iterator:
        from dask.distributed import as_completed

        if on_progress:
            self.client.subscribe_topic(PROGRESS_TOPIC, lambda event: on_progress(*event[1]))
        futures = {}
        for task in tasks:
            futures[self.client.submit(fn, task, publish_progress if on_progress else None, pure=False, resources=self.resources)] = task
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


def machine_memory() -> int:
    """Bytes of physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def worker_memory_limit(workers: int) -> int:
    """Each local worker's share of the machine's memory (Dask's nanny restarts a worker that passes 95% of it)."""
    return machine_memory() // max(workers, 1)


def make_executor(workers: int | None, n_tasks: int, scheduler: str | None, resources: dict[str, float] | None = None):
    """Pick a backend: an explicit scheduler, else a local cluster unless the job is tiny or workers == 1."""
    if scheduler:
        return DaskExecutor(scheduler=scheduler, resources=resources)
    n = workers if workers else min(local_cores(), n_tasks)
    if n <= 1 or n_tasks <= 2:
        return InProcessExecutor()
    return DaskExecutor(workers=n, resources=resources)
