"""Icechunk stores: locally, and on a real S3 API on localhost (moto's server) written by a real Dask cluster."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import MVFX, readme_python_block, run_cli

from benchmarks.s3server import environment, free_port, local_s3
from mvfx.media.errors import MvfxError
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store, open_writer, store_log
from mvfx.stores.icechunk_store import StoreConflict

DASK = str(Path(sys.executable).parent / "dask")
TOY = {"extractor": "toy", "version": "1", "dim": 3, "feature_names": ["a", "b", "c"], "config": {}, "weights": "none"}


@pytest.fixture(scope="module")
def s3():
    with local_s3() as variables, environment(variables):
        yield variables


def _same_features(store, reference, names=("colour", "emobase")):
    for name in names:
        assert store.clip_ids(name) == reference.clip_ids(name)
        for clip_id in reference.clip_ids(name):
            np.testing.assert_array_equal(store.read(name, clip_id)[0], reference.read(name, clip_id)[0])
            np.testing.assert_array_equal(store.read(name, clip_id)[1], reference.read(name, clip_id)[1])


def test_local_icechunk_store_equals_the_zarr_store_and_reads_as_of_any_commit(demo_corpus, demo_store, tmp_path):
    path = tmp_path / "features.icechunk"
    summary = run_extract(str(demo_corpus), str(path), ["colour", "emobase"], workers=1)
    assert summary.ok and summary.pairs_done == 12
    store = open_store(path)
    _same_features(store, open_store(demo_store))
    assert store.verify() == [] and store.summary()["extractors"]["emobase"]["uncompacted_parts"] == 0
    assert len(store.clips()) == 6

    log = store_log(path)
    assert log["message"].tolist() == ["mvfx: compact 12 parts", "mvfx: 6 clips (colour, emobase)", "mvfx: register extractors",
                                       "Repository initialized"]
    registered = log["commit"].iloc[2]
    assert open_store(f"{path}@{registered}").clip_ids("emobase") == []  # as of that commit: no clip yet

    assert run_cli("store", "tag", path, "v1").exit_code == 0
    again = run_extract(str(demo_corpus), str(path), ["colour", "emobase", "logmel_phase"], workers=1)
    assert again.pairs_done == 6 and again.pairs_skipped == 12
    assert "logmel_phase" in open_store(path).extractors() and "logmel_phase" not in open_store(f"{path}@v1").extractors()
    listed = run_cli("store", "log", path)
    assert listed.exit_code == 0 and "v1" in listed.output and "6 clips (logmel_phase)" in listed.output

    for out in (tmp_path / "v1.zarr", tmp_path / "v1.h5"):
        assert run_cli("store", "export", f"{path}@v1", out).exit_code == 0
        _same_features(open_store(out), store)
        assert open_store(out).extractors() == ["colour", "emobase"]


def test_store_addresses_that_cannot_work_are_one_line_errors(tmp_path, demo_store):
    with pytest.raises(MvfxError, match="only Icechunk stores have tags"):
        open_store(f"{demo_store}@v1")
    with pytest.raises(MvfxError, match=r"not ftp://"):
        open_writer("ftp://host/x")
    with pytest.raises(MvfxError, match="not an Icechunk store"):
        store_log(demo_store)
    open_writer(tmp_path / "new.icechunk").close()
    with pytest.raises(MvfxError, match="no tag, branch or commit 'nope'"):
        open_store(f"{tmp_path / 'new.icechunk'}@nope")
    with pytest.raises(MvfxError, match="read-only"):
        open_writer(f"{tmp_path / 'new.icechunk'}@main")


def test_features_imported_into_an_icechunk_store_keep_their_provenance(tmp_path):
    """The import stages before it registers: a fork made then must not clobber the registration when merged."""
    import pandas as pd

    folder = tmp_path / "csvs"
    folder.mkdir()
    for i in range(3):
        pd.DataFrame({"time": np.arange(5) * 0.5, "a": np.arange(5.0) + i, "b": np.ones(5)}).to_csv(folder / f"c{i}.csv", index=False)
    store = tmp_path / "imported.icechunk"
    assert run_cli("store", "import-features", folder, "--name", "hand", "--store", store).exit_code == 0
    imported = open_store(store)
    assert imported.verify() == [] and imported.attrs("hand")["version"] == "imported" and imported.clip_ids("hand") == ["c0", "c1", "c2"]
    np.testing.assert_array_equal(imported.read("hand", "c2")[0][:, 0], np.arange(5.0) + 2)


def test_a_part_whose_write_fails_in_a_fork_is_not_merged_with_the_clips_other_parts(tmp_path, monkeypatch):
    """The object store refuses one extractor's part mid-write: that pair fails, the clip's other parts (same fork)
    are committed, and nothing of the half part is merged as a committed clip."""
    import icechunk

    from mvfx.stores import icechunk_store

    def description(name):
        return {"extractor": name, "version": "1", "dim": 3, "feature_names": ["a", "b", "c"], "config": {}, "weights": "none"}

    values, times = np.ones((4, 3), np.float32), np.stack([np.arange(4) * 0.5, np.arange(4) * 0.5 + 0.5], axis=1)
    path = tmp_path / "s.icechunk"
    with open_writer(path) as writer:
        writer.register_extractor(description("good"))
        writer.register_extractor(description("bad"))
        staging = writer.staging()
        writer.commit(staging.stage("good", "clip", values, times, "float32"))
        real_write = icechunk_store.write_part

        def write_half(group, *args):
            group.create_array("values", data=values)
            raise icechunk.IcechunkError("simulated: the object store refused a chunk")

        monkeypatch.setattr(icechunk_store, "write_part", write_half)
        with pytest.raises(OSError, match="refused a chunk"):
            staging.stage("bad", "clip", values, times, "float32")
        monkeypatch.setattr(icechunk_store, "write_part", real_write)
        writer.set_clip({"clip_id": "clip", "path": "/corpus/clip.mp4", "duration_s": 2.0, "status": "ok"})
    store = open_store(path)
    assert store.clip_ids("good") == ["clip"] and store.clip_ids("bad") == []
    assert store.verify() == [] and store.summary()["extractors"]["bad"]["uncompacted_parts"] == 0


def _toy(writer, clip_id, seed):
    values = np.random.default_rng(seed).random((4, 3), dtype=np.float32)
    times = np.stack([np.arange(4) * 0.5, np.arange(4) * 0.5 + 0.5], axis=1)
    writer.commit(writer.staging().stage("toy", clip_id, values, times, "float32"))
    writer.set_clip({"clip_id": clip_id, "path": f"/corpus/{clip_id}.mp4", "duration_s": 2.0, "status": "ok"})
    return values


def test_concurrent_writers_on_s3_both_commit_disjoint_clips_and_conflict_on_the_same_one(s3):
    url = "s3://mvfx/concurrent"
    first, second = open_writer(url), open_writer(url)
    for writer in (first, second):
        writer.register_extractor(TOY)
    mine, theirs = _toy(first, "a", 0), _toy(second, "b", 1)
    first.add_failure("x", "toy", "extract", "ValueError", "x.mp4: broken")
    first.close()
    second.close()  # another run committed since it began: replayed on that tip, nothing of either lost
    store = open_store(url)
    assert store.clip_ids("toy") == ["a", "b"] and sorted(store.clips()["clip_id"]) == ["a", "b"]
    assert store.failures()["clip_id"].tolist() == ["x"] and store.verify() == []
    np.testing.assert_array_equal(store.read("toy", "a")[0], mine)
    np.testing.assert_array_equal(store.read("toy", "b")[0], theirs)

    early, late = open_writer(url), open_writer(url)
    for writer in (early, late):
        writer.register_extractor(TOY)
    kept = _toy(early, "c", 2)
    _toy(late, "c", 3)
    early.close()
    with pytest.raises(StoreConflict, match=r"another run committed toy of clip 'c' meanwhile") as conflict:
        late.close()
    assert "\n" not in str(conflict.value)
    store = open_store(url)
    np.testing.assert_array_equal(store.read("toy", "c")[0], kept)
    assert store.verify() == [] and store.clip_ids("toy") == ["a", "b", "c"]


@pytest.fixture
def s3_cluster(s3):
    """`dask scheduler` and two `dask worker` processes with the S3 variables in their environment."""
    from dask.distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    workers = {f"w{i}": subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                                "--name", f"w{i}"], **quiet)
               for i in range(2)}
    procs += workers.values()
    try:
        client = Client(address, timeout="30s")
        client.wait_for_workers(2, timeout=60)
        yield address, client, workers
        client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a worker still closing gracefully on a loaded machine
                proc.kill()
                proc.wait()


def _committed_clips(url: str) -> int:
    try:
        return int(store_log(url)["clips"].sum())
    except MvfxError:  # not created yet
        return 0


def test_dask_workers_write_to_s3_and_killed_workers_or_clients_lose_nothing(s3_cluster, demo_corpus, demo_store, capsys):
    address, client, workers = s3_cluster
    url = "s3://mvfx/cluster-run"
    cmd = [*MVFX, "extract", str(demo_corpus), "--store", url, "-e", "colour,emobase", "--scheduler", address, "--commit-every", "0"]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    names = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
    deadline = time.monotonic() + 120
    while not client.processing().get(names["w0"]) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "no task reached worker w0 before the run ended"
    os.kill(workers["w0"].pid, signal.SIGKILL)  # mid-task: its fork is never merged; the scheduler retries the clip on w1
    while _committed_clips(url) == 0 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before its client could be killed"
    os.kill(run.pid, signal.SIGKILL)  # the client, between commits
    run.wait()

    first = open_store(url)  # exactly what was committed, every clip of it whole
    committed = sum(len(first.clip_ids(n)) for n in ("colour", "emobase"))
    assert 2 <= committed < 12 and first.verify() == []
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr
    assert int(re.search(r"(\d+) already in the store", rerun.stderr).group(1)) == committed

    final = open_store(url)
    _same_features(final, open_store(demo_store))
    assert final.verify() == [] and final.failures().empty and sorted(final.clips()["clip_id"]) == final.clip_ids("emobase")
    listed = run_cli("store", "log", url)
    assert listed.exit_code == 0 and "register extractors" in listed.output

    code = readme_python_block("icechunk.s3_storage")  # the README's read-back with plain zarr + icechunk, as written
    assert 'bucket="lab", prefix="features"' in code and len(code.strip().splitlines()) <= 12
    capsys.readouterr()
    exec(code.replace('bucket="lab", prefix="features"', 'bucket="mvfx", prefix="cluster-run"'), {})
    assert capsys.readouterr().out.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")
