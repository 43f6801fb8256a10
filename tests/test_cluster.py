"""Real Dask scheduler + workers on 127.0.0.1, and a SIGKILLed run that resumes cleanly."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import MVFX

from mvfx.pipeline.demo_corpus import write_demo_corpus
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster():
    """`dask scheduler` and two `dask worker` processes, as a user would start them."""
    from dask.distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet)]
    procs += [
        subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"], **quiet)
        for i in range(2)
    ]
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def test_extract_through_an_existing_cluster_equals_the_local_run(dask_cluster, demo_corpus, demo_store, tmp_path):
    store = tmp_path / "cluster.zarr"
    proc = subprocess.run([*MVFX, "extract", str(demo_corpus), "--store", str(store), "-e", "colour,emobase",
                           "--scheduler", dask_cluster], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"dask cluster at {dask_cluster} (2 workers)" in proc.stderr
    local, remote = open_store(demo_store), open_store(store)
    for name in ("colour", "emobase"):
        assert remote.clip_ids(name) == local.clip_ids(name)
        for clip_id in local.clip_ids(name):
            np.testing.assert_array_equal(remote.read(name, clip_id)[0], local.read(name, clip_id)[0])


def test_unreachable_scheduler_is_a_one_line_error(tmp_path, demo_corpus):
    proc = subprocess.run([*MVFX, "extract", str(demo_corpus), "--store", str(tmp_path / "s.zarr"),
                           "--scheduler", f"tcp://127.0.0.1:{_free_port()}"], capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot reach the Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def corpus_24(tmp_path_factory):
    out = tmp_path_factory.mktemp("c24") / "corpus"
    write_demo_corpus(out, n_clips=24, seconds=2.0, seed=3)
    return out


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_leaves_one_clean_copy(corpus_24, tmp_path):
    store = tmp_path / "killed.zarr"
    cmd = [*MVFX, "extract", str(corpus_24), "--store", str(store), "-e", "colour,emobase", "-j", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = store / "features" / "emobase" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and sum(p.is_dir() for p in parts.iterdir()) >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    survived = open_store(store)  # readable right away, without mvfx repairing anything
    committed = survived.clip_ids("emobase")
    assert 5 <= len(committed) < 24
    for clip_id in committed:
        values, _ = survived.read("emobase", clip_id)
        assert values.shape == (4, 988) and np.isfinite(values).all()

    resumed = subprocess.run(cmd, capture_output=True, text=True)  # a plain rerun: no --break-lock needed
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after a crash" in resumed.stderr and "Traceback" not in resumed.stderr
    skipped = int(re.search(r"(\d+) already in the store", resumed.stderr).group(1))
    assert skipped in (2 * len(committed), 2 * len(committed) + 1)  # colour of the clip being committed may be in

    final = open_store(store)
    assert final.verify() == []
    uninterrupted = tmp_path / "uninterrupted.zarr"
    run_extract(str(corpus_24), str(uninterrupted), ["colour", "emobase"], workers=1)
    reference = open_store(uninterrupted)
    for name in ("colour", "emobase"):
        for clip_id in reference.clip_ids(name):
            np.testing.assert_array_equal(final.read(name, clip_id)[0], reference.read(name, clip_id)[0])
    for name in ("colour", "emobase"):
        info = final.summary()["extractors"][name]
        assert info["clips"] == 24 and info["uncompacted_parts"] == 0
        index = final.index_columns(name)
        assert len(set(index.clip_id)) == len(index) == 24
        assert index.count.sum() == info["rows"]
    assert subprocess.run([*MVFX, "store", "verify", str(store)], capture_output=True).returncode == 0
