"""Store I/O: the local Zarr store against Icechunk (a local folder, and the S3 API of a localhost server) and HDF5.

The features are the cheap extractors' on the 640x360 benchmark corpus, extracted once. Writing goes through
the writer every run uses (stage each clip, commit, compact; for Icechunk that is forks merged and committed
as transactions), reading through ``open_store`` clip by clip. The S3 column is moto's server on this machine:
it measures mvfx's and Icechunk's request pattern over real HTTP, not a cloud's bandwidth.
"""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.s3server import environment, local_s3
from mvfx.stores import open_store, open_writer
from mvfx.stores.exchange import export_hdf5

BACKENDS = ("zarr", "icechunk local", "icechunk S3 (localhost)", "hdf5")


def _disk_mb(path: Path) -> float:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return size / 2**20


def _write(source, target: str, extractors: list[str]) -> None:
    with open_writer(target) as writer:
        for name in extractors:
            writer.register_extractor(source.attrs(name))
        staging = writer.staging()
        for name in extractors:
            for clip_id in source.clip_ids(name):
                writer.commit(staging.stage(name, clip_id, *source.read(name, clip_id), "float32"))
        writer.compact()


def _read_all(target: str, extractors: list[str]) -> None:
    store = open_store(target)
    for name in extractors:
        for clip_id in store.clip_ids(name):
            store.read(name, clip_id)


def bench_store(results: dict, work: Path, source_path: Path, extractors: list[str], timed: Callable) -> None:
    source = open_store(source_path)
    mb = sum(source.read(e, c)[0].nbytes for e in extractors for c in source.clip_ids(e)) / 2**20
    first = source.clip_ids("emobase")[0]
    rows: dict[str, dict] = {}

    def measure(label: str, new_target: Callable[[], str], write: Callable[[str], None]) -> None:
        write_t = timed(lambda: write(new_target()))
        target = new_target()
        write(target)
        rows[label] = {
            "write_mb_s": mb / write_t["median"], "read_mb_s": mb / timed(lambda: _read_all(target, extractors))["median"],
            "one_clip_ms": 1000 * timed(lambda: open_store(target).read("emobase", first), runs=5)["median"],
            "disk_mb": _disk_mb(Path(target)) if "://" not in target else None, "write": write_t,
        }

    def local(suffix: str) -> Callable[[], str]:
        def new() -> str:
            path = work / f"bench{suffix}"
            if path.is_dir():
                shutil.rmtree(path)
            path.unlink(missing_ok=True)
            return str(path)
        return new

    measure("zarr", local(".zarr"), lambda t: _write(source, t, extractors))
    measure("icechunk local", local(".icechunk"), lambda t: _write(source, t, extractors))
    with local_s3() as variables, environment(variables):
        measure("icechunk S3 (localhost)", lambda: f"s3://mvfx/bench-{uuid.uuid4().hex[:8]}", lambda t: _write(source, t, extractors))
    measure("hdf5", local(".h5"), lambda t: export_hdf5(source, t))
    results["store"] = {"raw_float32_mb": mb, "clips": len(source.clip_ids("emobase")), "extractors": extractors, "rows": rows}


def markdown(store: dict) -> list[str]:
    rows = store["rows"]
    lines = ["", f"| store ({store['clips']} clips, {', '.join(store['extractors'])}: {store['raw_float32_mb']:.1f} MB raw float32) | "
             + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    lines.append("| write (stage, commit, compact; HDF5: export) | " + " | ".join(f"{r['write_mb_s']:.1f} MB/s" for r in rows.values()) + " |")
    lines.append("| read all clips | " + " | ".join(f"{r['read_mb_s']:.1f} MB/s" for r in rows.values()) + " |")
    lines.append("| one clip (emobase), open included | " + " | ".join(f"{r['one_clip_ms']:.0f} ms" for r in rows.values()) + " |")
    lines.append("| size on disk | " + " | ".join(f"{r['disk_mb']:.1f} MB" if r["disk_mb"] else "-" for r in rows.values()) + " |")
    return lines
