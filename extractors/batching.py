"""Forward passes shared by every clip in flight in a worker process (cross-clip batching).

With several clips in flight in one process (``--clips-in-flight``), each
clip's stream asks a network for the rows of its complete windows or frames.
A ``SharedForward`` gives the network one model thread: whenever it is free,
it takes every request then waiting (same item shape, up to ``batch`` items)
as one forward pass, and hands each caller its own rows. Nobody waits for a
batch to fill: while the network is the bottleneck requests pile up and its
batches grow; while decoding is, each request runs alone at once.

The model thread never dies with requests waiting: whatever fails in or after
a pass (a network error, a pass that returns another number of rows than its
items, a bug in handing the rows out) fails every request of that pass with
the error, and a failure outside a pass fails every waiting request and ends
the thread, which the next request replaces. So a clip waiting on a shared pass
always gets its rows or an exception, which becomes its failure row.

A request's rows do not depend on what else shares its batch, except through
floating-point summation order (the tests hold clip-by-clip and cross-clip
rows to the same tolerance as two thread counts).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

Forward = Callable[[np.ndarray], np.ndarray]  # items [N, ...] -> rows [N, D]


class _Request:
    def __init__(self, items: np.ndarray) -> None:
        self.items = items
        self.key = (items.shape[1:], items.dtype.str)
        self.future: Future = Future()


class SharedForward:
    """``shared(items)`` -> rows of ``forward(items)``, computed in batches merged with other threads' requests."""

    def __init__(self, forward: Forward, batch: int, name: str = "model") -> None:
        self.forward, self.batch, self.name = forward, max(1, batch), name
        self._waiting: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self.passes = 0  # forward passes run (for tests and the benchmark)
        self.requests = 0

    def __call__(self, items: np.ndarray) -> np.ndarray:
        """Rows for ``items``; blocks until they are computed and raises what the forward pass raised."""
        request = _Request(np.asarray(items))
        with self._ready:
            self._waiting.append(request)
            self.requests += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"mvfx-model-{self.name}", daemon=True)
                self._thread.start()
            self._ready.notify()
        return request.future.result()

    def _serve(self) -> None:
        taken: list[_Request] = []
        try:
            while True:
                with self._ready:
                    while not self._waiting:
                        self._ready.wait()
                    taken = self._take()
                self._run(taken)
        except BaseException as exc:  # a bug outside a pass: fail every clip waiting, let the next request start anew
            with self._ready:
                waiting, self._waiting, self._thread = [*taken, *self._waiting], deque(), None
            _fail(waiting, exc)

    def _take(self) -> list[_Request]:
        """The oldest request and every later one of the same shape that still fits the batch."""
        first = self._waiting.popleft()
        taken, count, kept = [first], len(first.items), deque()
        while self._waiting:
            request = self._waiting.popleft()
            if request.key == first.key and count + len(request.items) <= self.batch:
                taken.append(request)
                count += len(request.items)
            else:
                kept.append(request)
        self._waiting = kept
        return taken

    def _run(self, requests: list[_Request]) -> None:
        """One pass for ``requests``; each gets its own rows, or the pass's error (the model thread serves on)."""
        try:
            items = requests[0].items if len(requests) == 1 else np.concatenate([r.items for r in requests])
            rows = self.forward(items)
            self.passes += 1
            if len(rows) != len(items):
                raise ValueError(f"{self.name}: a forward pass of {len(items)} items gave {len(rows)} rows")
            bounds = np.cumsum([len(r.items) for r in requests])[:-1]
            for request, part in zip(requests, np.split(rows, bounds)):
                request.future.set_result(part)
        except BaseException as exc:
            _fail(requests, exc)


def _fail(requests: list[_Request], exc: BaseException) -> None:
    """Give ``exc`` to every request not answered yet."""
    for request in requests:
        if not request.future.done():
            request.future.set_exception(exc)
