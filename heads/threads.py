"""How many threads the heads train with: chosen on purpose, not left to torch's default.

The heads are small (a 2 x 256 LSTM, dense layers on clip-level features): one
batch's forward and backward pass takes milliseconds, so thread hand-offs
cost more than they save, and on a busy machine torch's default of one
thread per core makes every step wait for a core (a user measured the same
fusion run at 449 s with the default and 32 s with one thread, identical
numbers). Heads therefore train on one thread unless told otherwise:
``MVFX_THREADS=N`` or ``mvfx train --threads N ...``. The numbers do not
depend on the choice beyond float32 summation order.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "MVFX_THREADS"
DEFAULT = 1


def training_threads() -> int:
    """Threads for training: ``$MVFX_THREADS`` when set (a positive integer), else 1."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from mvfx.media.errors import MvfxError

        raise MvfxError(f"{ENV}={text!r}: expected a positive number of threads")
    return value


@contextlib.contextmanager
def limited_threads(n: int | None = None) -> Iterator[int]:
    """Run the enclosed training with ``n`` torch threads and ``n`` BLAS/OpenMP threads (scikit-learn), then restore."""
    import torch
    from threadpoolctl import threadpool_limits

    n = n or training_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(before)


def with_training_threads(fn):
    """Decorator: run a training entry point inside ``limited_threads()``."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with limited_threads():
            return fn(*args, **kwargs)

    return wrapper
