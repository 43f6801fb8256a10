import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr
from zarr.core.array import AsyncArray

from mvfx.media.errors import MvfxError
from mvfx.stores import index as index_module
from mvfx.stores import open_store, open_writer
from mvfx.stores.base import values_checksum
from mvfx.stores.lock import StoreLocked
from mvfx.stores.zarr_async import grow_arrays
from mvfx.stores.zarr_store import STAGING, TABLE_SWAPS, LocalStaging

DESC = {"extractor": "toy", "version": "1", "dim": 3, "feature_names": ["a", "b", "c"], "config": {"k": 1}, "weights": "none"}


def _block(clip_index: int, rows: int):
    values = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + 100 * clip_index
    times = np.stack([np.arange(rows) * 0.5, np.arange(rows) * 0.5 + 0.5], axis=1)
    return values, times


def _write(path, clips, compact=True):
    with open_writer(path) as w:
        w.register_extractor(DESC)
        for i, clip_id in enumerate(clips):
            values, times = _block(i, rows=i + 2)
            w.commit(w.staging().stage("toy", clip_id, values, times, "float32"))
            w.set_clip({"clip_id": clip_id, "path": f"/x/{clip_id}.mp4", "duration_s": 1.0, "status": "ok"})
        if compact:
            w.compact()


@pytest.mark.parametrize("compact", [False, True])
def test_round_trip_through_parts_and_compacted_arrays(tmp_path, compact):
    path = tmp_path / "s.zarr"
    _write(path, ["a", "dir/b", "c"], compact=compact)
    s = open_store(path)
    assert s.clip_ids() == s.clip_ids("toy") == ["a", "c", "dir/b"]
    values, times = s.read("toy", "dir/b")
    np.testing.assert_array_equal(values, _block(1, 3)[0])
    np.testing.assert_array_equal(times, _block(1, 3)[1])
    info = s.summary()
    assert info == {"clips": 3, "failures": 0, "extractors": {"toy": {
        "dim": 3, "version": "1", "clips": 3, "rows": 9, "weights": "none", "uncompacted_parts": 0 if compact else 3}},
        "damaged_clips": 0}
    assert s.attrs("toy")["feature_names"] == ["a", "b", "c"]
    assert s.store_attrs()["format"] == "mvfx-feature-store"


def test_compaction_appends_to_existing_rows(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, ["a", "b"])
    with open_writer(path) as w:
        values, times = _block(7, 4)
        w.commit(w.staging().stage("toy", "z", values, times, "float32"))
        assert w.compact() == 1
    s = open_store(path)
    np.testing.assert_array_equal(s.read("toy", "z")[0], values)
    np.testing.assert_array_equal(s.read("toy", "a")[0], _block(0, 2)[0])
    assert zarr.open_group(str(path))["features/toy/values"].shape == (2 + 3 + 4, 3)


def test_a_clip_is_never_committed_twice(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, ["a"])
    with open_writer(path) as w:
        w.commit(w.staging().stage("toy", "a", *_block(5, 9), "float32"))
        w.compact()
    s = open_store(path)
    assert s.summary()["extractors"]["toy"]["rows"] == 2
    np.testing.assert_array_equal(s.read("toy", "a")[0], _block(0, 2)[0])


def test_recovery_after_a_crash_mid_compaction(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, ["a"], compact=False)
    # Simulate a crash: a staged part never committed, and rows written past the index.
    LocalStaging(str(path)).stage("toy", "ghost", *_block(3, 5), "float32")
    with open_writer(path) as w:
        w.compact()
    group = zarr.open_group(str(path), mode="a")
    group["features/toy/values"].resize((10, 3))  # garbage rows that no index entry covers
    with open_writer(path) as w:
        assert not (path / STAGING).exists()
        w.commit(w.staging().stage("toy", "b", *_block(1, 3), "float32"))
        w.compact()
    s = open_store(path)
    assert s.clip_ids("toy") == ["a", "b"]
    np.testing.assert_array_equal(s.read("toy", "b")[0], _block(1, 3)[0])
    assert group["features/toy/values"].shape == (5, 3)


def test_a_compaction_of_many_parts_at_once_keeps_every_clips_rows(tmp_path):
    """Parts are read, appended and deleted in concurrent rounds (``stores.zarr_async``): rows stay with their clip."""
    path, clips = tmp_path / "s.zarr", [f"clip{i:02d}" for i in range(30)]
    with open_writer(path) as w:
        w.register_extractor(DESC)
        for i, clip_id in enumerate(clips):
            w.commit(w.staging().stage("toy", clip_id, *_block(i, rows=i % 4), "float32"))  # every fourth has no rows
        assert w.compact() == 30
    s = open_store(path)
    for i, clip_id in enumerate(clips):
        values, times = s.read("toy", clip_id)
        np.testing.assert_array_equal(values, _block(i, i % 4)[0])
        np.testing.assert_array_equal(times, _block(i, i % 4)[1])
    assert s.summary()["extractors"]["toy"]["uncompacted_parts"] == 0
    assert [p.name for p in (path / "features" / "toy" / "parts").iterdir()] == ["zarr.json"]  # the parts group, empty


def test_a_compaction_killed_before_its_commit_point_loses_nothing(tmp_path, monkeypatch):
    """The batch's arrays are written together, then published by one attribute write; a crash between the two
    leaves the clips in their parts, and the next compaction writes over the unpublished rows."""
    path = tmp_path / "s.zarr"
    _write(path, ["a"])
    with open_writer(path) as w:
        w.commit(w.staging().stage("toy", "b", *_block(1, 3), "float32"))
    real_grow = index_module.grow_arrays

    def grow_then_die(group, appends):
        real_grow(group, appends)
        raise KeyboardInterrupt("killed before the commit point")

    monkeypatch.setattr(index_module, "grow_arrays", grow_then_die)
    with pytest.raises(KeyboardInterrupt), open_writer(path) as w:
        w.compact()
    monkeypatch.undo()
    s = open_store(path)
    assert s.summary()["extractors"]["toy"]["uncompacted_parts"] == 1
    np.testing.assert_array_equal(s.read("toy", "b")[0], _block(1, 3)[0])
    with open_writer(path) as w:
        w.commit(w.staging().stage("toy", "c", *_block(2, 4), "float32"))
        assert w.compact() == 2
    s = open_store(path)
    for i, clip_id in enumerate(["a", "b", "c"]):
        np.testing.assert_array_equal(s.read("toy", clip_id)[0], _block(i, i + 2)[0])
    assert zarr.open_group(str(path))["features/toy/values"].shape == (2 + 3 + 4, 3)


def test_a_round_of_zarr_requests_raises_its_failure_and_refuses_one_array_twice(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", shape=(0, 2), dtype="float64", chunks=(8, 2))
    rows = np.ones((3, 2))
    with pytest.raises(ValueError, match="twice"):
        grow_arrays(group, [("a", 0, rows), ("a", 3, rows)])  # their resizes would race
    with pytest.raises(FileNotFoundError):
        grow_arrays(group, [("a", 0, rows), ("missing", 0, rows)])
    grow_arrays(group, [("a", 0, rows)])
    np.testing.assert_array_equal(group["a"][:], rows)


def test_a_table_torn_by_a_full_disk_reads_as_the_rows_every_column_has(tmp_path):
    """Before tables were swapped in whole, ``write_zarr_table`` replaced a store's columns one by one in place,
    and a full disk could stop it between two: such stores still read."""
    from mvfx.stores.layout import CLIP_COLUMNS
    from mvfx.stores.tables import read_zarr_table

    path = tmp_path / "s.zarr"
    _write(path, ["a", "b", "c"], compact=False)
    clips = zarr.open_group(str(path), mode="a")["clips"]
    newer = clips.create_array("clip_id", shape=(4,), dtype=str, chunks=(4,), overwrite=True)  # rewritten, then the disk filled
    newer[:] = np.array(["a", "b", "c", "d"], dtype=object)
    table = read_zarr_table(clips, CLIP_COLUMNS)
    assert table["clip_id"].tolist() == ["a", "b", "c"] and table["path"].notna().all()
    with open_writer(path) as w:  # the writer's copy is whole too (the records come back from the parts)
        assert sorted(w.clip_records().columns()["clip_id"]) == ["a", "b", "c"]
        w.compact()
    assert open_store(path).verify() == []


def _fail_on_call(monkeypatch, cls, method: str, call: int, error: BaseException) -> None:
    """Make the ``call``-th call of ``cls.method`` raise ``error`` (the calls before it run as usual)."""
    real, calls = getattr(cls, method), []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, failing)


def test_a_disk_that_fills_while_a_table_is_rewritten_leaves_the_old_table_whole(tmp_path, monkeypatch):
    """The clips table was rewritten in place, column by column, each deleted before it was written: a disk that
    filled after a column's metadata left that column as fill values (every clip id "", every path ""), and
    the next run died on duplicate keys. Now the new table is written aside and swapped in when complete."""
    import errno

    path = tmp_path / "s.zarr"
    _write(path, ["a", "b", "c"])  # compacted: the records live in the table alone
    writer = open_writer(path)
    writer.set_clip({"clip_id": "d", "path": "/x/d.mp4", "duration_s": 1.0, "status": "ok"})
    with monkeypatch.context() as patch:
        _fail_on_call(patch, AsyncArray, "setitem", 2, OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(OSError, match="No space"):
            writer.checkpoint()
    clips = open_store(path).clips()
    assert clips["clip_id"].tolist() == ["a", "b", "c"] and clips["path"].tolist() == ["/x/a.mp4", "/x/b.mp4", "/x/c.mp4"]
    writer.close()  # the space is back: the table with d goes in whole
    assert open_store(path).clips()["clip_id"].tolist() == ["a", "b", "c", "d"]
    swaps = path / STAGING / TABLE_SWAPS
    assert not (swaps.exists() and any(swaps.iterdir())) and open_store(path).verify() == []  # no swap left behind


def _interrupted_between_the_renames(path, monkeypatch):
    """A writer of ``path`` (clips a, b in its table) whose table swap with clip c was cut between its two renames."""
    from pathlib import Path

    _write(path, ["a", "b"])
    writer = open_writer(path)
    writer.set_clip({"clip_id": "c", "path": "/x/c.mp4", "duration_s": 1.0, "status": "ok"})
    with monkeypatch.context() as patch:  # renames: the written table to "new", the old table aside, "new" in
        _fail_on_call(patch, Path, "rename", 3, KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            writer.checkpoint()
    assert "clips" not in zarr.open_group(str(path), mode="r")
    return writer


def test_a_kill_between_the_two_renames_of_a_table_swap_is_finished_by_the_next_writer(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    _interrupted_between_the_renames(path, monkeypatch).lock.release()  # killed: only the lock goes with the process
    with open_writer(path) as again:
        assert sorted(again.clip_records().keys()) == ["a", "b", "c"]
    assert open_store(path).clips()["path"].tolist() == ["/x/a.mp4", "/x/b.mp4", "/x/c.mp4"]


def test_a_swap_cut_short_is_finished_before_the_table_is_written_again(tmp_path, monkeypatch):
    """Ctrl-C between the renames, then ``close`` writes the table again and the disk is full: the first version
    deleted the moved-aside table before that write, which then failed, and the table was gone for good."""
    import errno

    path = tmp_path / "s.zarr"
    writer = _interrupted_between_the_renames(path, monkeypatch)
    with monkeypatch.context() as patch:
        _fail_on_call(patch, AsyncArray, "setitem", 1, OSError(errno.ENOSPC, "No space left on device"))
        writer.close()  # a full disk at close is skipped (the parts carry the records): nothing raises
    assert open_store(path).clips()["clip_id"].tolist() == ["a", "b", "c"] and open_store(path).verify() == []


def test_a_first_table_write_killed_midway_leaves_no_torn_table(tmp_path, monkeypatch):
    """A new store's first table has no old one to keep: a half-written one was moved in by the next writer."""
    path = tmp_path / "s.zarr"
    writer = open_writer(path)
    writer.register_extractor(DESC)
    for i, clip_id in enumerate(["a", "b"]):
        record = {"clip_id": clip_id, "path": f"/x/{clip_id}.mp4"}
        writer.commit(writer.staging().stage("toy", clip_id, *_block(i, 2), "float32", record))
        writer.set_clip(record)
    with monkeypatch.context() as patch:  # SIGKILLed mid-write: no clean-up runs, the second column is not written
        # (the columns are written on zarr's event loop: an error there, not an interrupt, which would stop the loop)
        _fail_on_call(patch, AsyncArray, "setitem", 2, RuntimeError("killed"))
        patch.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        with pytest.raises(RuntimeError, match="killed"):
            writer.checkpoint()
    writer.lock.release()
    with open_writer(path) as again:  # the records come back from the parts
        assert sorted(again.clip_records().keys()) == ["a", "b"]
    assert open_store(path).clips()["path"].tolist() == ["/x/a.mp4", "/x/b.mp4"]


@pytest.mark.parametrize("target", [None, b"", b"features/toy"])
def test_a_swap_whose_target_name_is_damaged_is_left_alone(tmp_path, target):
    """A power cut can leave a complete new table beside an empty or cut name: moving by it renamed the store into
    its staging, or a feature set aside (then deleted with the staging)."""
    import hashlib

    path = tmp_path / "s.zarr"
    _write(path, ["a", "b"])
    slot = path / STAGING / TABLE_SWAPS / hashlib.sha1(b"features/toy/sources").hexdigest()
    shutil.copytree(path / "clips", slot / "new")
    if target is not None:
        (slot / "target").write_bytes(target)
    with open_writer(path) as w:
        assert sorted(w.clip_records().keys()) == ["a", "b"]
    assert open_store(path).verify() == [] and open_store(path).clip_ids("toy") == ["a", "b"]


def test_a_table_of_a_feature_set_with_a_long_name_is_written(tmp_path):
    """Staging folders were named by the quoted table path, which grew past the 255 bytes a file name may have."""
    name = "x" * 240
    with open_writer(tmp_path / "s.zarr") as w:
        w.register_extractor(DESC | {"extractor": name})
        w.add_source_stamps(name, {"a": "crc32:1"})
    with open_writer(tmp_path / "s.zarr") as w:
        assert w.source_stamps(name) == {"a": "crc32:1"}


def test_a_staged_part_is_a_plain_zarr_group(tmp_path):
    """A worker's part: values, times (one chunk each) and the clip's record, readable without mvfx."""
    values, times = _block(0, 5)
    staged = LocalStaging(str(tmp_path)).stage("toy", "a", values, times, "float16", {"clip_id": "a", "duration_s": 2.5})
    part = zarr.open_group(staged.path, mode="r")
    np.testing.assert_array_equal(part["values"][:], values.astype(np.float16))
    np.testing.assert_array_equal(part["times"][:], times)
    assert dict(part.attrs) == {"clip_id": "a", "rows": 5, "checksum": values_checksum(values.astype(np.float16)),
                                "clip": {"clip_id": "a", "duration_s": 2.5}}
    assert part["values"].chunks == (5, 3)
    empty = LocalStaging(str(tmp_path)).stage("toy", "b", np.zeros((0, 3)), np.zeros((0, 2)), "float32")
    assert zarr.open_group(empty.path, mode="r")["values"].shape == (0, 3) and empty.rows == 0


def test_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    path = tmp_path / "s.zarr"
    first = open_writer(path)
    with pytest.raises(StoreLocked, match="another mvfx run is writing this store"):
        open_writer(path)
    first.close()
    assert not (path / ".mvfx-lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (path / ".mvfx-lock").write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "since": "then"}))
    writer = open_writer(path)  # same host, nobody holds the OS lock: that run has ended, no flag needed
    assert f"pid {int(dead.stdout)}" in writer.lock.took_over and "\n" not in writer.lock.took_over
    writer.close()
    assert not (path / ".mvfx-lock").exists()


def test_a_lock_from_another_host_still_needs_the_flag(tmp_path):
    path = tmp_path / "s.zarr"
    open_writer(path).close()
    (path / ".mvfx-lock").write_text(json.dumps({"host": "render-node-7", "pid": 4242, "since": "then"}))
    with pytest.raises(StoreLocked, match=r"locked from another host \(pid 4242 on render-node-7.*--break-lock"):
        open_writer(path)
    writer = open_writer(path, break_lock=True)
    assert "render-node-7" in writer.lock.took_over
    writer.close()


def test_a_killed_writer_process_releases_the_store(tmp_path):
    """SIGKILL leaves the lock file behind; the kernel has dropped the OS lock, so the next writer proceeds."""
    path = tmp_path / "s.zarr"
    code = f"from mvfx.stores import open_writer; import os, signal; w = open_writer({str(path)!r}); os.kill(os.getpid(), signal.SIGKILL)"
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == -9 and (path / ".mvfx-lock").exists()
    writer = open_writer(path)
    assert "has ended" in writer.lock.took_over
    writer.close()


def test_changed_extractor_config_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, ["a"])
    with open_writer(path) as w, pytest.raises(MvfxError, match=r"made differently \(config"):
        w.register_extractor(DESC | {"config": {"k": 2}})


def test_reading_a_missing_clip_or_extractor_is_a_clear_error(tmp_path):
    path = tmp_path / "s.zarr"
    _write(path, ["a"])
    s = open_store(path)
    with pytest.raises(MvfxError, match="no toy features for clip 'nope'"):
        s.read("toy", "nope")
    with pytest.raises(MvfxError, match="no features for extractor 'vggish'"):
        s.read("vggish", "a")
    with pytest.raises(MvfxError, match="not an mvfx store"):
        open_store(tmp_path)


def test_float16_storage(tmp_path):
    path = tmp_path / "s.zarr"
    with open_writer(path) as w:
        w.register_extractor(DESC, dtype="float16")
        w.commit(w.staging().stage("toy", "a", *_block(0, 2), "float16"))
        w.compact()
    values, _ = open_store(path).read("toy", "a")
    assert values.dtype == np.float16
    shutil.rmtree(path)
