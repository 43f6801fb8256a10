"""Heads I: EWE, metrics, alignment, folds, LASSO and LSTM (early/late/PAIR) on real cached features."""
import json
import warnings

import numpy as np
import pytest
from helpers import run_cli
from sklearn.base import clone

from mvfx.heads.data.align import align
from mvfx.heads.data.dataset import RandomWeightsWarning, check_weights, fold_splits
from mvfx.heads.data.labels import ewe, inter_rater_agreement, read_labels
from mvfx.heads.metrics import ccc, pearson, rmse
from mvfx.heads.models.lstm import windows
from mvfx.media.errors import MvfxError


def test_ewe_weights_by_correlation_zeroes_negative_and_drops_constant():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]
    anti, still = [4.0, 3.0, 2.0, 1.0], [0.5, 0.5, 0.5, 0.5]
    gold, weights = ewe(np.array([a, b, anti, still]))
    # mean of the moving three rises, so a and b get r = 1, the anti-correlated one 0, the constant one is dropped
    np.testing.assert_allclose(weights, [1, 1, 0, 0])
    np.testing.assert_allclose(gold, [1.5, 2.5, 3.5, 4.5])


def test_ewe_hand_computed_unequal_weights():
    r = np.array([[0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    mean = r.mean(axis=0)  # [0, 1, .5, 1]
    w = [np.corrcoef(x, mean)[0, 1] for x in r]  # 0.9045, 0.9045... computed directly
    gold, weights = ewe(r)
    np.testing.assert_allclose(weights, w)
    np.testing.assert_allclose(gold, (w[0] * r[0] + w[1] * r[1]) / (w[0] + w[1]))


def test_agreement_is_one_for_identical_annotators_and_nan_for_one():
    x = np.array([[0.1, 0.5, 0.2, 0.9]] * 3)
    assert inter_rater_agreement(x) == pytest.approx(1.0)
    assert np.isnan(inter_rater_agreement(x[:1]))


def test_metrics_against_direct_formulas():
    rng = np.random.default_rng(0)
    y, p = rng.standard_normal(50), rng.standard_normal(50)
    assert rmse(y, p) == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    assert pearson(y, p) == pytest.approx(np.corrcoef(y, p)[0, 1])
    expected = 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)
    assert ccc(y, p) == pytest.approx(expected)
    assert ccc(y, y) == pytest.approx(1.0) and ccc(y, y + 1) == pytest.approx(2 * y.var() / (2 * y.var() + 1))
    assert np.isnan(pearson(y, np.ones(50)))


def test_align_096_hop_rows_onto_a_half_second_grid():
    values = np.array([[1.0], [3.0]])
    times = np.array([[0.0, 0.96], [0.96, 1.92]])
    grid = np.array([[0.0, 0.5], [0.5, 1.0], [1.0, 1.5], [1.5, 2.0], [2.0, 2.5]])
    out = align(values, times, grid)
    np.testing.assert_allclose(out[:4, 0], [1.0, (0.46 * 1 + 0.04 * 3) / 0.5, 3.0, 3.0], rtol=1e-6)
    assert np.isnan(out[4, 0])  # nothing overlaps [2.0, 2.5)


def test_align_broadcasts_clip_level_rows_and_skips_nan():
    clip_level = align(np.array([[7.0, 2.0]]), np.array([[0.0, 10.0]]), np.array([[0, 0.5], [4, 4.5]]))
    np.testing.assert_allclose(clip_level, [[7, 2], [7, 2]])
    with_nan = align(np.array([[np.nan], [4.0]]), np.array([[0, 0.5], [0.25, 0.75]]), np.array([[0.0, 0.5]]))
    np.testing.assert_allclose(with_nan, [[4.0]])


def test_windows_are_the_previous_steps_front_padded():
    w = windows(np.arange(5, dtype=float)[:, None], 3)
    np.testing.assert_array_equal(w[:, :, 0], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]])


def test_folds_never_put_a_clip_in_train_and_test():
    splits = fold_splits(23, 5, seed=4)
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(23))
    assert all(not set(train) & set(test) for train, test in splits)
    assert [t.tolist() for _, t in splits] == [t.tolist() for _, t in fold_splits(23, 5, seed=4)]


def test_labels_from_the_demo_annotations(heads_corpus):
    golds = read_labels(heads_corpus / "corpus" / "annotations.csv", "arousal")
    assert len(golds) == 24
    gold = golds["clip_000"]
    assert gold.ratings.shape == (5, 16) and gold.times[1].tolist() == [0.5, 1.0]
    assert 0.2 < gold.agreement < 0.95


# LASSO measured on this corpus: per-clip CCC 0.30 (seed 0) and 0.32 (seed 1); threshold 0.15.
def test_lasso_learns_arousal_and_reports_coefficients(heads_corpus):
    out = heads_corpus / "runs" / "lasso"
    proc = run_cli("train", "lasso", str(heads_corpus / "s.zarr"), "--labels",
                           str(heads_corpus / "corpus" / "annotations.csv"), "-f", "emobase", "--target", "arousal",
                           "--out", str(out))
    assert proc.exit_code == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    ccc = metrics["models"]["lasso"]["aggregate"]["ccc"]["mean"]
    assert ccc > 0.15 and metrics["inter_rater_ccc"]["mean"] > ccc - 0.3
    assert len(metrics["folds"]) == 5 and sum(len(f["test_clips"]) for f in metrics["folds"]) == 24
    assert metrics["top_coefficients"][0]["feature"].startswith("emobase:")
    for name in ("config.json", "model/model.json", "model/state.pt", "coefficients.csv", "coefficients.png", "trajectories.png",
                 "folds.png", "predictions.csv"):
        assert (out / name).stat().st_size > 0
    assert "CCC" in proc.stderr and "inter-rater" in proc.stderr
    report = run_cli("report", str(out))
    assert report.exit_code == 0 and "lasso" in report.stdout


# PAIR LSTM measured on this corpus with the fast settings below: CCC 0.36 +- 0.18 over 3 folds; threshold 0.15.
# (The defaults - lr 1e-4, up to 300 epochs - reach 0.50 on the 36-clip demo in 4 minutes; too slow for the suite.)
@pytest.mark.slow
def test_lstm_pair_fusion_learns_arousal(heads_corpus):
    # Measured (2026-12-07): CCC 0.373 at 20 epochs in 58 s, 0.395 at 40 epochs in 74 s; hidden 64 gave only 0.171.
    corpus, out = heads_corpus / "corpus", heads_corpus / "runs" / "pair"
    proc = run_cli("train", "lstm", str(heads_corpus / "s.zarr"), "--labels", str(corpus / "annotations.csv"),
                           "-f", "emobase,colour", "--fusion", "pair", "--pretrain-labels", f"emobase={corpus / 'annotations_music.csv'}",
                           "--pretrain-labels", f"colour={corpus / 'annotations_visual.csv'}", "--out", str(out),
                           "--epochs", "20", "--patience", "6", "--lr", "1e-3", "--folds", "3")
    assert proc.exit_code == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["lstm"]["aggregate"]["ccc"]["mean"] > 0.15
    config = json.loads((out / "config.json").read_text())
    assert config["params"]["fusion"] == "pair" and config["params"]["hidden"] == 256 and config["params"]["seq_len"] == 4
    report = run_cli("report", str(out))
    assert report.exit_code == 0 and "lstm (pair)" in report.stdout and "emobase,colour" in report.stdout


def test_lstm_is_seeded_and_reproducible(heads_corpus):
    from mvfx.heads.data.dataset import build
    from mvfx.heads.models.lstm import LstmHead
    from mvfx.stores import open_store

    clips = build(open_store(heads_corpus / "s.zarr"), ["colour"], read_labels(heads_corpus / "corpus" / "annotations.csv", "arousal"))
    head = LstmHead(features=["colour"], max_epochs=3, hidden=32, seed=5)
    a, b = (clone(head).fit(clips[:10]).predict([clips[11]])[0] for _ in range(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fusion, features, error", [("none", ["emobase", "colour"], "exactly one"), ("late", ["colour"], "at least two")])
def test_fusion_needs_the_right_number_of_feature_sets(fusion, features, error):
    from mvfx.heads.models.lstm import input_groups

    with pytest.raises(MvfxError, match=error):
        input_groups(features, fusion)


def test_training_on_random_weight_features_warns(demo_corpus, heads_corpus, tmp_path, monkeypatch):
    from mvfx.pipeline.run import run_extract
    from mvfx.stores import open_store

    monkeypatch.setenv("MVFX_HOME", str(tmp_path))
    store = tmp_path / "r.zarr"
    run_extract(str(demo_corpus), str(store), ["vggish"], workers=1, random_weights=True)
    with pytest.warns(RandomWeightsWarning, match="vggish were extracted with --random-weights"):
        check_weights(open_store(store), ["vggish"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_weights(open_store(heads_corpus / "s.zarr"), ["emobase"]) == []
