"""Forward passes shared by every clip in flight in a worker process (cross-clip batching).

With several clips in flight in one process (``--clips-in-flight``), each
clip's stream asks a network for the rows of its complete windows or frames.
A ``SharedForward`` gives the network one model thread: whenever it is free,
it takes every request then waiting (same item shape, up to ``batch`` items)
as one forward pass, and hands each caller its own rows. Nobody waits for a
batch to fill: while the network is the bottleneck requests pile up and its
batches grow; while decoding is, each request runs alone at once. Only the
model thread calls the network, so state that a forward pass leaves on the
module (the pooled features a SlowFast/I3D hook keeps) is never shared
between two batches.

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
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
                requests = self._take()
            self._run(requests)

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
        try:
            items = requests[0].items if len(requests) == 1 else np.concatenate([r.items for r in requests])
            rows = self.forward(items)
            self.passes += 1
        except BaseException as exc:  # every caller of this batch gets the error; the model thread serves on
            for request in requests:
                request.future.set_exception(exc)
            return
        bounds = np.cumsum([len(r.items) for r in requests])[:-1]
        for request, part in zip(requests, np.split(rows, bounds)):
            request.future.set_result(part)
