"""Shared fixtures: the real media in ../shared/data, a small demo corpus, odd files.

Every test runs with a cache of its own (``MVFX_HOME``, an autouse fixture), as on a machine that has never run
mvfx: nothing a test writes reaches the user's ``~/.cache/mvfx``, and no test depends on what an earlier one (or
an earlier run) left there. Session fixtures, made before any test's own cache, get one for the session.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path


def _share_the_cores() -> None:
    """Under ``pytest -n N`` (``make test``), N test processes share the cores, each with torch's default of one
    OpenMP thread per core. libgomp's threads spin while they wait, so two processes' threads took turns spinning:
    a small convolution loop ran 4x slower in each of two processes than alone (5.9 s against 1.4 s). Passive
    waiting (threads sleep) makes the pair take about what the two runs take one after the other (2.0 s each).
    Set before anything imports torch, whose OpenMP runtime reads it once."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_share_the_cores()

import numpy as np
import pytest
from helpers import DEMO_EXTRACTORS, SHARED_DATA, tone

from mvfx.media.encode import write_mp4
from mvfx.pipeline.demo_corpus import write_demo_corpus


def pytest_configure(config) -> None:
    """Caches of this session's own: mvfx's (weights, Ultralytics' settings) and matplotlib's (its font list)."""
    home = Path(tempfile.mkdtemp(prefix="mvfx-test-home-"))
    os.environ["MVFX_HOME"] = str(home / "mvfx")
    os.environ["YOLO_CONFIG_DIR"] = str(home / "ultralytics")
    os.environ["MPLCONFIGDIR"] = str(home / "matplotlib")


@pytest.fixture(autouse=True)
def own_mvfx_home(tmp_path_factory, monkeypatch) -> Path:
    """Each test starts from an empty weights cache, as a new machine does."""
    home = tmp_path_factory.mktemp("mvfx_home")
    monkeypatch.setenv("MVFX_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "video").is_dir():
        pytest.skip(f"real media not found at {SHARED_DATA} (the shared/ folder beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """Six 4-second clips, one per class."""
    out = tmp_path_factory.mktemp("demo") / "corpus"
    write_demo_corpus(out, n_clips=6, seconds=4.0, seed=0)
    return out


@pytest.fixture(scope="session")
def demo_store(demo_corpus, tmp_path_factory) -> Path:
    """The demo corpus extracted in-process with the three foundation extractors."""
    from mvfx.pipeline.run import run_extract

    path = tmp_path_factory.mktemp("stores") / "demo.zarr"
    summary = run_extract(str(demo_corpus), str(path), DEMO_EXTRACTORS, workers=1)
    assert summary.ok and summary.pairs_done == 6 * 3
    return path


@pytest.fixture(scope="session")
def odd_corpus(tmp_path_factory, demo_corpus) -> Path:
    """Two good clips plus every kind of bad file the pipeline must survive."""
    out = tmp_path_factory.mktemp("odd")
    for name in ("clip_000", "clip_001"):
        (out / f"{name}.mp4").write_bytes((demo_corpus / f"{name}.mp4").read_bytes())
    good = (demo_corpus / "clip_002.mp4").read_bytes()
    (out / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (out / "empty.mp4").write_bytes(b"")
    (out / "text.mp4").write_text("this is not a video\n")
    write_mp4(out / "audio_only.mp4", None, 24, tone(2.0))
    write_mp4(out / "video_only.mp4", (np.full((48, 64, 3), 100, np.uint8) for _ in range(48)), 24)
    return out


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills, made once per test run. Under pytest-xdist the processes share it:
    the first to ask builds it under a lock while the others wait, so a corpus that takes a minute to extract costs
    that minute once, not once per process. Without xdist it is this session's own. Treat it as read-only."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    run_root = tmp_path_factory.getbasetemp().parent  # pytest-N, shared by this run's processes only
    folder = run_root / f"{name}-shared"
    with open(run_root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def _write_heads_corpus(root: Path) -> None:
    from mvfx.pipeline.run import run_extract

    write_demo_corpus(root / "corpus", n_clips=24, seconds=8.0, seed=1, size=(160, 90))
    assert run_extract(str(root / "corpus"), str(root / "s.zarr"), ["emobase", "colour"], workers=1).ok


@pytest.fixture(scope="session")
def heads_corpus(tmp_path_factory) -> Path:
    """24 labelled 8-second clips (160x90) with emobase + colour extracted: enough to cross-validate heads.
    Extracted once per run (``_built_once``); each process gets a copy of its own, since tests write runs into it."""
    root = tmp_path_factory.mktemp("heads")
    shutil.copytree(_built_once(tmp_path_factory, "heads", _write_heads_corpus), root, dirs_exist_ok=True)
    return root
