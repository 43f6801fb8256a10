"""Many small zarr operations in one round of concurrent requests.

Zarr's synchronous API hands each call to its event loop and blocks until it
returns: 2-4 ms a call on this machine, whatever the size. A compaction batch
grows six arrays (values, times and four index columns) and reads and deletes
one group per clip, so done one by one those calls, not the data, were most
of its time. Here they go to the loop together (``asyncio.gather``), which
also lets the codecs of different arrays run at once.
"""
from __future__ import annotations

import asyncio

import numpy as np
import zarr
from zarr.api.asynchronous import open_array, open_group
from zarr.core.sync import sync

# Never skip writing a chunk that equals the fill value: the arrays here always receive data, and the check
# compares whole chunks (2 MiB) bit by bit on every write.
WRITE_ALWAYS = {"write_empty_chunks": True}


def _path(group: zarr.Group, *names: str) -> str:
    return "/".join(p for p in (group.path, *names) if p)


def grow_arrays(group: zarr.Group, appends: list[tuple[str, int, np.ndarray]]) -> None:
    """For each (array name in ``group``, start row, rows): resize the array to end after ``rows`` written at
    ``start`` (dropping anything past it), and write them; all at once."""
    async def grow(name: str, start: int, rows: np.ndarray) -> None:
        array = (await open_array(store=group.store, path=_path(group, name), mode="r+")).with_config(WRITE_ALWAYS)
        await array.resize((start + len(rows), *array.shape[1:]))
        if len(rows):
            await array.setitem(slice(start, start + len(rows)), rows)

    async def grow_all() -> None:
        await asyncio.gather(*(grow(*append) for append in appends))

    sync(grow_all())


def read_groups(group: zarr.Group, names: list[str], arrays: tuple[str, ...]) -> list[tuple[dict, list[np.ndarray]]]:
    """(attributes, [each of ``arrays`` whole]) of each member group of ``group`` named in ``names``, read at once."""
    async def read(parent, name: str) -> tuple[dict, list[np.ndarray]]:
        member = await parent.getitem(name)
        opened = await asyncio.gather(*(member.getitem(key) for key in arrays))
        return dict(member.attrs), list(await asyncio.gather(*(array.getitem(slice(None)) for array in opened)))

    async def read_all() -> list[tuple[dict, list[np.ndarray]]]:
        parent = await open_group(store=group.store, path=group.path, mode="r")
        return list(await asyncio.gather(*(read(parent, name) for name in names)))

    return sync(read_all())


def delete_members(group: zarr.Group, names: list[str]) -> None:
    """Delete the members of ``group`` named in ``names``, at once."""
    async def delete_all() -> None:
        parent = await open_group(store=group.store, path=group.path, mode="r+")
        await asyncio.gather(*(parent.delitem(name) for name in names))

    if names:
        sync(delete_all())


def fill_group(group: zarr.Group, arrays: dict[str, np.ndarray], attributes: dict, compressors=None) -> None:
    """Write each of ``arrays`` whole, as one chunk, into the empty ``group``, and set its attributes; at once."""
    async def put(parent, name: str, data: np.ndarray) -> None:
        array = await parent.create_array(name, shape=data.shape, dtype=data.dtype, chunks=data.shape if len(data) else (1, *data.shape[1:]),
                                          compressors=compressors, config=WRITE_ALWAYS)
        if len(data):
            await array.setitem(slice(None), data)

    async def fill_all() -> None:
        parent = await open_group(store=group.store, path=group.path, mode="r+")
        await asyncio.gather(*(put(parent, name, data) for name, data in arrays.items()), parent.update_attributes(attributes))

    sync(fill_all())
