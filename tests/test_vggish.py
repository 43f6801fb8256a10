"""VGGish: reference front-end parity, shapes and time grid, checkpoint and random-weights provenance."""
import numpy as np
import pytest
import torch
from helpers import random_extractor
from torchvggish.torchvggish import VGG, make_layers
from torchvggish.vggish_input import waveform_to_examples

import mvfx.extractors as extractors
from mvfx.extractors import weights
from mvfx.extractors.vggish import log_mel_examples
from mvfx.media.hashing import file_sha256
from mvfx.media.probe import ClipInfo
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

INFO = ClipInfo(path="synthetic", size_bytes=1, content_hash="", duration_s=1.0, has_video=False, has_audio=True)


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("seconds", [2.0, 10.3])
def test_front_end_matches_torchvggish_reference(seconds):
    audio = _audio(seconds).astype(np.float64)
    reference = waveform_to_examples(audio, 16000, return_tensor=False)
    ours = log_mel_examples(audio)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4


def test_front_end_hop_is_configurable():
    audio = _audio(3.0)
    half = log_mel_examples(audio, hop_s=0.48)
    full = log_mel_examples(audio)
    assert len(half) == 1 + (298 - 96) // 48
    np.testing.assert_allclose(half[2], full[1])


@pytest.fixture(scope="module")
def random_vggish():
    e = random_extractor("vggish")
    return e


@pytest.mark.parametrize("seconds, rows", [(0.5, 1), (0.96, 1), (10.0, 10), (31.0, 32)])
def test_shapes_and_time_grid(random_vggish, seconds, rows):
    block = random_vggish.extract(_audio(seconds), INFO, {})
    assert block.values.shape == (rows, 128)
    np.testing.assert_allclose(block.times[:, 0], np.arange(rows) * 0.96)
    np.testing.assert_allclose(block.times[:, 1] - block.times[:, 0], 0.96)


def test_random_weights_are_seeded_and_batches_do_not_change_results(random_vggish):
    other = random_extractor("vggish", batch_size="3")
    audio = _audio(8.0)
    np.testing.assert_allclose(other.extract(audio, INFO, {}).values, random_vggish.extract(audio, INFO, {}).values, rtol=1e-5, atol=1e-6)


def test_pca_quantisation_and_mean_pooling():
    pca = random_extractor("vggish_pca")
    values = pca.extract(_audio(5.0), INFO, {}).values
    assert values.min() >= 0 and values.max() <= 255 and np.all(values == np.round(values))
    pooled = random_extractor("vggish", pooling="mean")
    block = pooled.extract(_audio(5.0), INFO, {})
    assert block.values.shape == (1, 128) and block.times.tolist() == [[0.0, 5.0]]
    assert pooled.time_grid.kind == "clip"


def test_missing_weights_stop_before_any_work(demo_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    from mvfx.media.errors import MvfxError

    with pytest.raises(MvfxError, match=r"vggish-10086976\.pth .* is missing"):
        run_extract(str(demo_corpus), str(tmp_path / "s.zarr"), ["emobase", "vggish"], workers=1)
    assert not (tmp_path / "s.zarr").exists()


def test_random_weights_are_marked_in_the_store(demo_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    store = tmp_path / "r.zarr"
    summary = run_extract(str(demo_corpus), str(store), ["vggish", "emobase"], workers=1, random_weights=True)
    assert summary.ok
    s = open_store(store)
    assert s.attrs("vggish")["weights"] == "random" and s.attrs("emobase")["weights"] == "none"
    assert s.summary()["extractors"]["vggish"]["weights"] == "random"
    assert s.read("vggish", "clip_000")[0].shape == (4, 128)


def test_a_present_checkpoint_is_loaded_and_its_hash_recorded(demo_corpus, tmp_path, monkeypatch):
    """A checkpoint with the published key layout (not the published file: imported with --force, as a fine-tuned
    one is) runs without the flag, and the store records its own hash."""
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    torch.manual_seed(123)
    checkpoint = tmp_path / "vggish-test.pth"
    torch.save(VGG(make_layers(), postprocess=False).state_dict(), checkpoint)
    digest = file_sha256(checkpoint)
    weights.import_file("vggish", checkpoint, force=True)
    store = tmp_path / "real.zarr"
    assert run_extract(str(demo_corpus), str(store), ["vggish"], workers=1).ok
    s = open_store(store)
    assert s.attrs("vggish")["weights"] == f"sha256:{digest}"
    e = extractors.create("vggish")
    e.setup("cpu")
    np.testing.assert_array_equal(e.model.state_dict()["features.0.weight"], torch.load(checkpoint)["features.0.weight"])
    with pytest.raises(Exception, match=r"made differently \(weights"):
        run_extract(str(demo_corpus), str(store), ["vggish"], workers=1, random_weights=True)
