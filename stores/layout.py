"""Names and versions of the on-disk store layout (shared by the Zarr and HDF5 backends).

    <store>/                     root attrs: format, format_version, mvfx_version, created, updated
      clips/<column>             1-D arrays, one row per clip (see CLIP_COLUMNS)
      failures/<column>          1-D arrays, one row per failed (clip, extractor) (FAILURE_COLUMNS)
      features/<extractor>/      attrs: provenance + indexed_clips (committed rows of index/)
        index/<column>           clip_id, offset, count, checksum: where each clip's rows are (stores.index)
        values [N, D]            float32 (or float16), chunked along rows
        times  [N, 2]            float64 start/end seconds of each row
        parts/<part>/            committed but not yet compacted clips: values, times, attrs.clip_id
        sources/<column>         imported feature sets only: clip_id, crc32 of the file each clip came from
"""
from __future__ import annotations

FORMAT_NAME = "mvfx-feature-store"
FORMAT_VERSION = 2  # 1: the clip index was one JSON attribute (clip_index); migrated by the next writer

CLIP_COLUMNS: dict[str, str] = {
    "clip_id": "str",
    "path": "str",
    "content_hash": "str",
    "size_bytes": "int64",
    "duration_s": "float64",
    "has_video": "bool",
    "has_audio": "bool",
    "fps": "float64",
    "width": "int32",
    "height": "int32",
    "video_codec": "str",
    "sample_rate": "int32",
    "channels": "int32",
    "audio_codec": "str",
    "status": "str",  # ok | partial | failed
    "damaged_packets": "int32",  # packets FFmpeg could not decode and mvfx skipped (0: an intact file)
    "damaged_spans": "str",  # where, in seconds: "1.43-1.81;2.10-2.30"
    "missing_spans": "str",  # streams that end early or hold nothing decodable: "audio 6.40-30.00" ("" in older stores)
}

FAILURE_COLUMNS: dict[str, str] = {
    "clip_id": "str",
    "extractor": "str",  # "*" when the whole clip failed (probe, decode)
    "stage": "str",  # discover | plan | probe | decode | input | extract | store | worker | import
    "error": "str",
    "message": "str",
    "time": "str",  # ISO 8601 UTC
}

SOURCES = "sources"
SOURCE_COLUMNS: dict[str, str] = {"clip_id": "str", "crc32": "str"}

TARGET_CHUNK_BYTES = 2 << 20


def chunk_rows(dim: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk of values is about 2 MiB."""
    return max(64, TARGET_CHUNK_BYTES // max(1, dim * itemsize))
