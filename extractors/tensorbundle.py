"""A reader of TensorFlow's checkpoint format (TensorBundle), so TF 1 checkpoints load without TensorFlow.

A checkpoint ``PREFIX`` is two files: ``PREFIX.index``, a LevelDB-style sorted
table that maps each variable's name to a ``BundleEntryProto`` (dtype, shape,
shard, byte offset and size), and ``PREFIX.data-00000-of-00001``, the tensors'
raw little-endian bytes one after the other. TensorFlow writes the table
without compression, so reading it takes a varint decoder and a few lines of
protobuf: the layout is that of ``tensorflow/core/util/tensor_bundle`` and
``tensorflow/core/lib/io/table_format``. Only float32 tensors of a single
shard are read (what TF 1 ``Saver`` checkpoints of float models hold); the
files' integrity is the weights registry's business (sha256), so the per-tensor
CRCs are not checked.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mvfx.media.errors import MvfxError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked crc32c (4 bytes)
DT_FLOAT = 1


class BundleError(ValueError):
    """The bytes are not a TensorBundle this reader understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _protobuf_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a serialised protobuf message: varints as ints, the rest as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise BundleError(f"protobuf wire type {wire}")
        yield number, value


def _block_entries(table: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of one table block (keys are prefix-compressed against the previous key)."""
    if offset + size + BLOCK_TRAILER_BYTES > len(table):
        raise BundleError("block past the end of the file")
    if table[offset + size] != 0:
        raise BundleError("compressed table block")
    block = table[offset : offset + size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end, pos, key = len(block) - 4 * (restarts + 1), 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _table(index: bytes) -> Iterator[tuple[str, bytes]]:
    """Every (key, value) of the sorted table, in order."""
    if len(index) < FOOTER_BYTES or struct.unpack_from("<Q", index, len(index) - 8)[0] != TABLE_MAGIC:
        raise BundleError("no table footer")
    footer = index[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # the metaindex block's offset and size: not needed
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    for _, handle in _block_entries(index, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _block_entries(index, offset, size):
            yield key.decode(), value


def _entry(value: bytes) -> tuple[int, tuple[int, ...], int, int, int]:
    """dtype, shape, shard, offset and size of a BundleEntryProto."""
    fields = {"dtype": 0, "shard": 0, "offset": 0, "size": 0}
    shape: list[int] = []
    names = {1: "dtype", 3: "shard", 4: "offset", 5: "size"}
    for number, field in _protobuf_fields(value):
        if number == 2:  # TensorShapeProto: repeated Dim (field 2) {size (field 1)}
            for dim_number, dim in _protobuf_fields(field):
                if dim_number == 2:
                    shape.append(next((v for n, v in _protobuf_fields(dim) if n == 1), 0))
        elif number == 7:
            raise BundleError("sliced tensors")
        elif number in names:
            fields[names[number]] = field
    return fields["dtype"], tuple(shape), fields["shard"], fields["offset"], fields["size"]


def read_bundle(index_path: Path, data_path: Path) -> dict[str, np.ndarray]:
    """Every float32 tensor of a one-shard checkpoint, by variable name; a one-line MvfxError for other files."""
    try:
        index = Path(index_path).read_bytes()
        data = np.fromfile(data_path, dtype=np.uint8)
        tensors = {}
        for name, value in _table(index):
            if not name:  # the BundleHeaderProto: number of shards, endianness
                header = dict(_protobuf_fields(value))
                if header.get(1, 1) != 1 or header.get(2, 0) != 0:
                    raise BundleError("not a single little-endian shard")
                continue
            dtype, shape, shard, offset, size = _entry(value)
            if dtype != DT_FLOAT:
                continue
            if shard != 0 or offset + size > len(data) or size != 4 * int(np.prod(shape)):
                raise BundleError(f"tensor {name} of {size} bytes at {offset} does not fit its shape {shape}")
            tensors[name] = data[offset : offset + size].view("<f4").reshape(shape).copy()
    except (BundleError, OSError, struct.error) as exc:
        raise MvfxError(f"{index_path}: not a TensorFlow checkpoint this reader takes ({exc})") from None
    return tensors
