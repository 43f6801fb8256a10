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

Tasks go out in bounded batches: at most ``SUBMITTED_PER_THREAD`` per worker
thread are submitted at once, and each finished one is replaced from the
(lazy) task iterable. So a 100,000-clip corpus never puts 100,000 futures on
the client or 100,000 task specs on the scheduler; what the client holds per
clip is its plan (a ``ClipSource`` and the extractors it lacks), not a task.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from mvfx.media.errors import MvfxError, one_line
from mvfx.pipeline.threads import ThreadBudget, own_process


def local_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


ProgressSink = Callable[[str, float, float], None]  # (clip id, decoded seconds, clip seconds)
PROGRESS_TOPIC = "mvfx-progress"
SUBMITTED_PER_THREAD = 2  # one running, one ready to start: no thread waits on the client, little waits in queues
PLACE_POLL_S = 0.05  # how often a clip waiting for a place looks whether its run has stopped


class InProcessExecutor:
    """Run tasks here with no start-up cost: one after another, or ``clips_in_flight`` at once in threads.

    Clips in flight share this process's models (and their forward passes, see ``extractors.batching``);
    decoding and the networks release the GIL, so the threads overlap.
    """

    workers = 1

    def __init__(self, clips_in_flight: int = 1) -> None:
        self.clips_in_flight = clips_in_flight
        self.description = "in-process" + (f", {clips_in_flight} clips in flight" if clips_in_flight > 1 else "")

    def cores_per_worker(self) -> int:
        return local_cores()

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any],
                      on_progress: ProgressSink | None = None) -> Iterator:
        if self.clips_in_flight <= 1:
            for task in tasks:
                yield fn(task, on_progress)
            return
        # A thread more than the clips in flight: a clip whose extractors are done gives its place to the next one
        # while it stores its blocks (``clip_place``), so the device gets the next clip's passes sooner.
        places = ClipPlaces(self.clips_in_flight)
        pool = ThreadPoolExecutor(self.clips_in_flight + 1, thread_name_prefix="mvfx-clip", initializer=_use_places,
                                  initargs=(places,))
        try:
            yield from bounded(tasks, lambda task: pool.submit(fn, task, on_progress),
                               lambda pending: wait(pending, return_when=FIRST_COMPLETED).done,
                               lambda: SUBMITTED_PER_THREAD * self.clips_in_flight, on_error)
        finally:  # a run stopped early (the store unwritable): the clips not started yet, or waiting for a place, never start
            places.stop()
            pool.shutdown(wait=True, cancel_futures=True)

    def prepare_workers(self, budget: ThreadBudget) -> None:
        """Nothing to do: this process is not mvfx's to set up for good (``threads.threads_limited`` borrows it)."""

    def close(self) -> None:
        pass


class RunStopped(Exception):
    """A clip was still waiting for its place when its run stopped: it does not start."""


class ClipPlaces:
    """The places of one in-process run's clips in flight. A clip takes one as it starts and gives it back once its
    extractors are done, before it stores its blocks (``clip_place``); the run's pool has a thread more, so the next
    clip starts meanwhile: on the device, the next clip's first passes had waited for the last clip's storing
    (0.2-0.6 s at every change of clips). Once the run stops, a clip still waiting never starts."""

    def __init__(self, places: int) -> None:
        self._free = threading.BoundedSemaphore(places)
        self._stopped = threading.Event()

    def take(self) -> bool:
        """Wait for a place; False if the run stops first."""
        while not self._stopped.is_set():
            if self._free.acquire(timeout=PLACE_POLL_S):
                return True
        return False

    def give_back(self) -> None:
        self._free.release()

    def stop(self) -> None:
        self._stopped.set()


_POOL_THREAD = threading.local()  # ``places``: the ClipPlaces of the run whose pool this thread belongs to


def _use_places(places: ClipPlaces) -> None:
    _POOL_THREAD.places = places


@contextlib.contextmanager
def clip_place() -> Iterator[Callable[[], None]]:
    """This thread's place for one clip, where its run has places (an in-process run with clips in flight): taken
    on entry (``RunStopped`` once the run has stopped), given back by the function it yields, at the latest on exit.
    Elsewhere (one clip at a time, a Dask worker, whose threads are its clips in flight) there is nothing to take."""
    places = getattr(_POOL_THREAD, "places", None)
    if places is None:
        yield lambda: None
        return
    if not places.take():
        raise RunStopped("the run stopped before this clip started")
    held = True

    def give_back() -> None:
        nonlocal held
        if held:
            held = False
            places.give_back()

    try:
        yield give_back
    finally:
        give_back()


def bounded(tasks: Iterable, submit: Callable[[Any], Any], completed: Callable[[dict], Iterable],
            limit: Callable[[], int], on_error: Callable[[Any, BaseException], Any]) -> Iterator:
    """Outcomes of ``tasks`` as they complete, with at most ``limit()`` submitted at any time.

    ``submit(task)`` returns a future; ``completed(pending)`` blocks until some of the pending futures are done
    and returns those. Tasks are drawn from ``tasks`` only as room frees up (the rest wait in the iterable, not
    in a queue), and a finished batch is replaced before its outcomes are handed on, so workers stay busy while
    the caller commits them. A task whose future fails (a bug outside the clip's own error handling, a worker
    lost) becomes ``on_error(task, exc)``.
    """
    pending: dict = {}  # future -> task
    queued = iter(tasks)
    outcomes: list = []
    while True:
        for task in itertools.islice(queued, max(0, limit() - len(pending))):
            pending[submit(task)] = task
        yield from outcomes
        if not pending:
            return
        outcomes = [_outcome(f, pending.pop(f), on_error) for f in completed(pending)]


def _outcome(future, task, on_error: Callable[[Any, BaseException], Any]):
    try:
        return future.result()
    except Exception as exc:  # a bug outside the clip's own error handling, or a lost worker: that clip fails, the run goes on
        return on_error(task, exc)
    finally:
        if hasattr(future, "release"):  # a Dask future: let the cluster forget it now (an error's traceback would keep it)
            future.release()


def dask_worker():
    """The Dask worker running this task, or None. Dask is not imported to find out: a process that has not
    imported it runs no Dask worker (importing ``distributed`` costs an in-process run 0.6 s)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # not in a worker
        return None


def publish_progress(clip_id: str, decoded_s: float, duration_s: float) -> None:
    """Progress of a clip on a Dask worker, sent to the client as a scheduler event (``PROGRESS_TOPIC``)."""
    from distributed import get_worker

    get_worker().log_event(PROGRESS_TOPIC, (clip_id, decoded_s, duration_s))


class DaskExecutor:
    """Run tasks on Dask distributed: a new local cluster or an existing scheduler address."""

    THREADS_RECOUNT_S = 10.0

    def __init__(self, workers: int = 0, scheduler: str | None = None, resources: dict[str, float] | None = None,
                 clips_in_flight: int = 1) -> None:
        from dask.distributed import Client, LocalCluster

        self.resources = resources or None
        self.cluster = None
        self._threads: int | None = None  # worker threads of the cluster, last counted at _threads_counted
        self._threads_counted = 0.0
        self.clips_in_flight = clips_in_flight
        try:
            if scheduler:  # its workers' threads, set by whoever started them, are their clips in flight
                self.client = Client(scheduler, timeout="10s")
                workers_info = self.client.scheduler_info()["workers"].values()
                self.workers = len(workers_info)
                threads = [w["nthreads"] for w in workers_info] or [1]
                self.clips_in_flight = min(threads)  # for planning; each worker runs as many clips as it has threads
                if self.resources:
                    try:
                        self.resources = _clip_share(self.resources, threads, [w.get("resources", {}) for w in workers_info],
                                                     scheduler)
                    except MvfxError:
                        self.client.close()
                        raise
                self.description = f"dask cluster at {scheduler} ({self.workers} workers)"
            else:
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=clips_in_flight, processes=True, dashboard_address=None,
                    resources=self.resources, memory_limit=worker_memory_limit(workers),
                )
                self.client = Client(self.cluster)
                self.workers = workers
                in_flight = f", {clips_in_flight} clips in flight each" if clips_in_flight > 1 else ""
                self.description = f"local dask cluster ({workers} worker processes{in_flight})"
        except OSError as exc:
            raise MvfxError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {one_line(exc)}") from None

    def prepare_workers(self, budget: ThreadBudget) -> None:
        """The workers of a local cluster are mvfx's own: their thread counts and allocator are set for their life
        (``threads.own_process``, as a worker plugin). A cluster someone else started is left as it is."""
        if self.cluster is not None:
            self.client.register_plugin(_worker_settings(budget))

    def cores_per_worker(self) -> int:
        """Cores per worker process: a local cluster's share of this machine, else the smallest share on any host."""
        if self.cluster is not None:
            return max(1, local_cores() // max(1, self.workers))
        cores = self.client.run(local_cores)  # {worker address: cores of its machine}
        hosts: dict[str, list[int]] = {}
        for address, n in cores.items():
            hosts.setdefault(address.rsplit(":", 1)[0], []).append(n)
        return min((max(1, n[0] // len(n)) for n in hosts.values()), default=1)

    def map_unordered(self, fn: Callable, tasks: Iterable, on_error: Callable[[Any, BaseException], Any],
                      on_progress: ProgressSink | None = None) -> Iterator:
        from dask.distributed import as_completed

        if on_progress:
            self.client.subscribe_topic(PROGRESS_TOPIC, lambda event: on_progress(*event[1]))
        running = as_completed(loop=self.client.loop)

        def submit(task):
            future = self.client.submit(fn, task, publish_progress if on_progress else None, pure=False, resources=self.resources)
            running.add(future)
            return future

        yield from bounded(tasks, submit, lambda pending: running.next_batch(block=True), self.submission_limit, on_error)

    def submission_limit(self) -> int:
        """Tasks submitted at once: ``SUBMITTED_PER_THREAD`` per worker thread of the cluster (at least 2).

        Counted again every ``THREADS_RECOUNT_S`` seconds, so workers that join a running job (a batch
        system starting them late) get work too.
        """
        now = time.monotonic()
        if self._threads is None or now - self._threads_counted >= self.THREADS_RECOUNT_S:
            self._threads = sum(self.client.nthreads().values())
            self._threads_counted = now
        return max(2, SUBMITTED_PER_THREAD * self._threads)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _clip_share(resources: dict[str, float], threads: list[int], declared: list[dict], scheduler: str) -> dict[str, float]:
    """What one clip's task asks of a worker's declared resources (GPU=1): a part small enough that every thread of
    the busiest worker runs a clip (a 1-thread and a 3-thread worker: a third each). Workers that declare none would
    never get a task: refused in one line, not left waiting."""
    for name in resources:
        if not any(name in d for d in declared):
            raise MvfxError(f"no worker of the cluster at {scheduler} declares the {name} resource that GPU clips need: "
                            f"start GPU workers with `dask worker {scheduler} --resources {name}=1`")
    return {name: amount / max(threads) for name, amount in resources.items()}


def _worker_settings(budget: ThreadBudget):
    """A Dask worker plugin running ``threads.own_process(budget)`` in each worker as it starts."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class WorkerSettings(WorkerPlugin):
        name = "mvfx-worker-settings"

        def setup(self, worker) -> None:
            own_process(budget)

    return WorkerSettings()


def machine_memory() -> int:
    """Bytes of physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def worker_memory_limit(workers: int) -> int:
    """Each local worker's share of the machine's memory (Dask's nanny restarts a worker that passes 95% of it)."""
    return machine_memory() // max(workers, 1)


def clips_per_worker(clips_in_flight: int, n_tasks: int, workers: int) -> int:
    """Clips in flight per worker, at most the worker's part of the job: 4 clips on 4 workers are 1 clip each, whose
    decoder then gets the worker's whole share of the cores (``ThreadBudget.per_decoder``), not a third of it; and
    with one thread each, Dask's workers take one clip each instead of three on one worker."""
    return max(1, min(clips_in_flight, math.ceil(n_tasks / max(1, workers))))
