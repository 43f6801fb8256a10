import librosa
import numpy as np
import opensmile
import pytest
from helpers import solid_frames

import mvfx.extractors as extractors
from mvfx.extractors.base import fixed_windows
from mvfx.media.probe import ClipInfo

INFO = ClipInfo(path="synthetic", size_bytes=1, content_hash="", duration_s=1.0, has_video=True, has_audio=True)


def _named(extractor, row):
    return dict(zip(extractor.feature_names, row))


def test_colour_of_pure_red_green_and_grey():
    colour = extractors.create("colour")
    colour.setup()
    block = colour.extract(solid_frames((255, 0, 0), (0, 255, 0), (128, 128, 128)), INFO, {})
    assert block.values.shape == (3, colour.dim) == (3, 18 + 8 + 6)
    red, green, grey = (_named(colour, r) for r in block.values)
    assert red["hue_000_020"] == 1.0 and sum(v for k, v in red.items() if k.startswith("hue_")) == 1.0
    assert green["hue_120_140"] == 1.0
    assert red["saturation_0.875_1.000"] == 1.0 and red["value_mean"] == pytest.approx(1.0)
    assert red["luma_mean"] == pytest.approx(0.299, abs=1e-3)
    # grey has no chromatic pixels: an all-zero hue histogram, all pixels in the lowest saturation bin
    assert all(v == 0 for k, v in grey.items() if k.startswith("hue_")) and grey["chromatic_fraction"] == 0
    assert grey["saturation_0.000_0.125"] == 1.0
    assert grey["value_mean"] == pytest.approx(128 / 255, abs=1e-3) and grey["value_std"] == pytest.approx(0, abs=1e-6)


def test_colour_lighting_key_is_mean_times_spread_of_value():
    colour = extractors.create("colour")
    img = np.zeros((10, 10, 3), np.uint8)
    img[:5] = 255  # half white, half black: V mean 0.5, std 0.5
    row = _named(colour, colour.frame_features(img))
    assert row["value_mean"] == pytest.approx(0.5) and row["value_std"] == pytest.approx(0.5)
    assert row["lighting_key"] == pytest.approx(0.25)


def test_emobase_equals_a_direct_opensmile_call_on_each_window():
    rng = np.random.default_rng(0)
    sr = 16000
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(1.6 * sr)) / sr) + 0.01 * rng.standard_normal(int(1.6 * sr))).astype(np.float32)
    emobase = extractors.create("emobase")
    emobase.setup()
    block = emobase.extract(audio, INFO, {})
    assert block.values.shape == (3, 988) and len(emobase.feature_names) == 988
    np.testing.assert_allclose(block.times, [[0, 0.5], [0.5, 1.0], [1.0, 1.5]])
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.emobase, feature_level=opensmile.FeatureLevel.Functionals)
    direct = smile.process_signal(audio[8000:16000], sr)
    np.testing.assert_array_equal(block.values[1], direct.to_numpy()[0].astype(np.float32))
    assert emobase.feature_names == list(direct.columns)


def test_emobase_window_is_configurable_and_short_clips_get_one_row():
    emobase = extractors.create("emobase", window_s="1.0", hop_s="0.5")
    emobase.setup()
    assert emobase.time_grid.window_s == 1.0 and emobase.time_grid.hop_s == 0.5
    np.testing.assert_allclose(fixed_windows(2.2, 1.0, 0.5), [[0, 1], [0.5, 1.5], [1, 2]])
    short = emobase.extract(np.zeros(4000, np.float32) + 0.01, INFO, {})
    np.testing.assert_allclose(short.times, [[0, 0.25]])


def test_emobase_lld_rows_every_10_ms():
    lld = extractors.create("emobase_lld")
    lld.setup()
    block = lld.extract(np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1, INFO, {})
    assert block.values.shape[1] == 26 and abs(len(block.values) - 98) <= 2
    np.testing.assert_allclose(np.diff(block.times[:, 0]), 0.01, atol=1e-9)


def test_logmel_phase_matches_librosa_melspectrogram():
    sr = 22050
    audio = np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    lm = extractors.create("logmel_phase")
    lm.setup()
    block = lm.extract(audio, INFO, {})
    n_frames = 1 + (sr - 2048) // 512
    assert block.values.shape == (n_frames, 256) and lm.value_shape == (2, 128)
    reference = librosa.power_to_db(
        librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=2048, hop_length=512, n_mels=128, center=False),
        ref=1.0, amin=1e-10, top_db=None,
    )
    np.testing.assert_allclose(block.values[:, :128], reference.T, atol=1e-3)
    phase = block.values[:, 128:]
    assert phase.min() >= -np.pi - 1e-6 and phase.max() <= np.pi + 1e-6
    np.testing.assert_allclose(block.times[1], [512 / sr, (512 + 2048) / sr])


def test_every_extractor_declares_its_contract():
    for name in extractors.names():
        e = extractors.create(name)
        d = e.describe()
        assert d["extractor"] == name and d["version"] and d["dim"] == len(d["feature_names"]) > 0
        assert int(np.prod(d["value_shape"])) == d["dim"]
        assert e.modality in ("audio", "video") and e.time_grid.kind in ("window", "frame", "clip")


def test_unknown_option_is_a_clear_error():
    from mvfx.media.errors import MvfxError

    with pytest.raises(MvfxError, match="unknown option 'windw'"):
        extractors.create("emobase", windw="1")
