"""Where a run's time goes: seconds per stage of each clip, added up over the run, for its summary.

A clip's work runs in two threads (``pipeline.streaming``): one decodes, one feeds the extractors. Stages:

- ``set-up``: building and loading the worker's networks (its first clips only);
- one stage per extractor: its feeds and its finish in the clip's thread. Waits for a network that
  clips in flight share are included, and so are, on a GPU, the forward passes it waits for;
- ``waiting for frames``: the clip's thread waiting for the decoder. When it is large, decoding is the
  bottleneck (more workers, ``--decode cuda``); when it is small the extractors are;
- ``probe`` and ``storing`` (writing the clip's parts);
- ``decoding``: the decoder thread's busy time (demuxing, decoding, converting and scaling frames). It
  overlaps the stages above, so it is reported apart from them.

A network's forward passes (upload, the pass, the rows back: on a GPU, its wait for the device) are also
counted apart, under ``forward_stage(name)``, and shown inside their extractor's share: what the extractor
spent besides them is its host-side work (stacking windows, cropping, NMS, statistics).

Clips in flight overlap too, so the sums can exceed the run's wall time; their proportions are what tell.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
DECODING, WAITING, SETUP, PROBE, STORING = "decoding", "waiting for frames", "set-up", "probe", "storing"
_END = object()
_FORWARD = " forward passes"


def forward_stage(extractor: str) -> str:
    """The stage name of ``extractor``'s forward passes (a part of its own stage, not added to the totals)."""
    return extractor + _FORWARD


@contextmanager
def timing(times: Counter, stage: str) -> Iterator[None]:
    """Add the seconds the ``with`` block takes to ``times[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[stage] += time.perf_counter() - start


def timed_items(items: Iterable[T], times: Counter, stage: str) -> Iterator[T]:
    """``items``, adding the time spent producing each one to ``times[stage]``; closing this closes ``items``."""
    iterator = iter(items)
    try:
        while True:
            with timing(times, stage):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item
    finally:
        getattr(iterator, "close", lambda: None)()


def describe(times: Mapping[str, float]) -> str:
    """One line: the clip-thread stages, largest first, with their share, then decoding, which ran beside them."""
    shown = sorted(((s, t) for s, t in times.items() if s != DECODING and not s.endswith(_FORWARD)), key=lambda st: -st[1])
    total = sum(t for _, t in shown) or 1.0
    parts = [f"{stage} {_seconds(t)} ({100 * t / total:.0f} %{_forward_part(times, stage)})" for stage, t in shown]
    line = ", ".join(parts) or "nothing measurable"
    if DECODING in times:
        line += f"; decoding {_seconds(times[DECODING])} beside them, in its own thread"
    return line


def _seconds(t: float) -> str:
    return f"{t:.1f} s" if t >= 1 else f"{t:.2f} s"


def _forward_part(times: Mapping[str, float], stage: str) -> str:
    forward = times.get(forward_stage(stage))
    return f", forward passes {_seconds(forward)}" if forward else ""
