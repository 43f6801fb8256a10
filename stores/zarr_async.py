"""Many small zarr operations in rounds of concurrent requests.

Zarr's synchronous API hands each call to its event loop and blocks until it
returns: 2-4 ms a call on this machine, whatever the size. A compaction batch
grows six arrays (values, times and four index columns) and reads and deletes
one group per clip, and a clip's worker writes a group per extractor; done
one by one, those calls, not the data, were most of the time. Here each step
goes to zarr's loop as one round (``sync`` is zarr's own runner, the one its
synchronous API uses; zarr has no public one yet, and ``zarr`` is pinned in
constraints.txt).

A round runs at most ``IN_FLIGHT`` requests at once. When one fails, the ones
not started are cancelled and the round raises that failure; requests already
handed to a thread (a local file being written) finish on their own. Every
caller then stops before its commit point, so nothing half-written is published.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.api.asynchronous import open_array, open_group
from zarr.core.sync import sync

Item = TypeVar("Item")
Result = TypeVar("Result")

IN_FLIGHT = 64  # requests of a round at once: enough to hide a call's latency, few enough for any store's connections
# Write every chunk, even one that equals the fill value: these arrays always receive data, and the check compares
# each chunk written (up to 2 MiB) with the fill value bit by bit.
WRITE_ALWAYS = {"write_empty_chunks": True}


async def _each(work: Callable[[Item], Awaitable[Result]], items: Iterable[Item]) -> list[Result]:
    """``work(item)`` for every item, ``IN_FLIGHT`` at a time; the results in order, or the first failure."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def gated(item: Item) -> Result:
        async with gate:
            return await work(item)

    tasks = [asyncio.ensure_future(gated(item)) for item in items]
    if not tasks:
        return []
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
    if failed is not None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise failed.exception()
    return [task.result() for task in tasks]


def grow_arrays(group: zarr.Group, appends: Sequence[tuple[str, int, np.ndarray]]) -> None:
    """For each (path of an array under ``group``, start row, rows): resize the array to end after ``rows``
    written at ``start`` (dropping anything past it), and write them; the arrays all at once."""
    paths = [path for path, _, _ in appends]
    if len(set(paths)) != len(paths):
        raise ValueError(f"grow_arrays: an array appears twice in one round ({paths})")

    async def grow(append: tuple[str, int, np.ndarray]) -> None:
        path, start, rows = append
        array = await open_array(store=group.store, path=_path(group, path), mode="r+", config=WRITE_ALWAYS)
        await array.resize((start + len(rows), *array.shape[1:]))
        if len(rows):
            await array.setitem(slice(start, start + len(rows)), rows)

    sync(_each(grow, appends))


def read_groups(group: zarr.Group, names: Sequence[str], arrays: tuple[str, ...]) -> list[tuple[dict, list[np.ndarray]]]:
    """(attributes, [each of ``arrays`` whole]) of each member group of ``group`` named in ``names``, read at once."""
    async def read_all() -> list[tuple[dict, list[np.ndarray]]]:
        parent = await open_group(store=group.store, path=group.path, mode="r")

        async def read(name: str) -> tuple[dict, list[np.ndarray]]:
            member = await parent.getitem(name)
            opened = [await member.getitem(key) for key in arrays]
            return dict(member.attrs), [await array.getitem(slice(None)) for array in opened]

        return await _each(read, names)

    return sync(read_all())


def delete_members(group: zarr.Group, names: Sequence[str]) -> None:
    """Delete the members of ``group`` named in ``names``, at once."""
    async def delete_all() -> None:
        parent = await open_group(store=group.store, path=group.path, mode="r+")
        await _each(parent.delitem, names)

    if names:
        sync(delete_all())


def fill_group(group: zarr.Group, arrays: dict[str, np.ndarray], attributes: dict[str, Any], compressors: Any,
               dtypes: dict[str, Any] | None = None, overwrite: bool = False, write_empty_chunks: bool = True) -> None:
    """Write each of ``arrays`` whole, as one chunk, into ``group`` (``compressors`` as zarr takes them: None for none;
    ``dtypes``: a stored dtype other than the array's, e.g. ``str`` for a column of Python strings), then update its
    attributes, which come last: in a new group, attributes mean every array is there. An array already there is an
    error, or with ``overwrite`` replaced. ``write_empty_chunks=False``: a chunk equal to the fill value is not
    written (zarr's default; it reads back the same)."""
    config = {"write_empty_chunks": write_empty_chunks}

    async def fill_all() -> None:
        parent = await open_group(store=group.store, path=group.path, mode="r+")

        async def put(item: tuple[str, np.ndarray]) -> None:
            name, data = item
            chunks = data.shape if len(data) else (1, *data.shape[1:])
            dtype = (dtypes or {}).get(name, data.dtype)
            array = await parent.create_array(name, shape=data.shape, dtype=dtype, chunks=chunks, compressors=compressors,
                                              config=config, overwrite=overwrite)
            if len(data):
                await array.setitem(slice(None), data)

        await _each(put, arrays.items())
        await parent.update_attributes(attributes)

    sync(fill_all())


def _path(group: zarr.Group, *names: str) -> str:
    return "/".join(p for p in (group.path, *names) if p)
