"""Heads as estimators: clone per fold, save/load round trips, provenance, `mvfx predict` on unseen videos."""
import json

import numpy as np
import pytest
from helpers import run_cli
from sklearn.base import clone

from mvfx.heads.data.dataset import build, clip_level_features, pretrain_targets
from mvfx.heads.data.labels import read_class_labels, read_labels
from mvfx.heads.data.pairs import build_pairs, load_pairs
from mvfx.heads.models.correspond import CorrespondHead
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.models.lasso import LassoHead
from mvfx.heads.models.lstm import LstmHead
from mvfx.heads.provenance import check_features, with_provenance
from mvfx.heads.saved import load_head, save
from mvfx.media.errors import MvfxError
from mvfx.pipeline.demo_corpus import write_demo_corpus
from mvfx.stores import open_store

FAST = {"max_epochs": 15, "patience": 5, "lr": 1e-3}


@pytest.fixture(scope="module")
def clips(heads_corpus):
    store = open_store(heads_corpus / "s.zarr")
    return store, build(store, ["emobase", "colour"], read_labels(heads_corpus / "corpus" / "annotations.csv", "arousal"))


def _round_trip(head, tmp_path, x, y, predict, **fit_params):
    fitted = head.fit(x, y, **fit_params)
    before = predict(fitted)
    loaded = load_head(save(fitted, tmp_path / head.kind))
    assert type(loaded) is type(head) and loaded.get_params() == head.get_params()
    after = predict(loaded)
    for a, b in zip(before if isinstance(before, list) else [before], after if isinstance(after, list) else [after]):
        np.testing.assert_array_equal(a, b)


def test_lasso_and_lstm_round_trip_to_identical_predictions(clips, heads_corpus, tmp_path):
    _, data = clips
    _round_trip(LassoHead(features=["emobase"]), tmp_path, data[:16], None, lambda h: h.predict(data[16:]))
    pair = LstmHead(features=["emobase", "colour"], fusion="pair", hidden=16, **FAST)
    music = read_labels(heads_corpus / "corpus" / "annotations_music.csv", "arousal")
    own = pretrain_targets(data[:16], {"emobase": music})
    _round_trip(pair, tmp_path, data[:16], None, lambda h: h.predict(data[16:]), modality_targets=own)


def test_fusion_ensemble_and_correspondence_round_trip(clips, heads_corpus, tmp_path):
    store, _ = clips
    labels = read_class_labels(heads_corpus / "corpus" / "labels.csv")
    x = {e: clip_level_features(store, e, labels["clip_id"].tolist()) for e in ("emobase", "colour")}
    y = labels["label"].to_numpy()
    fusion = FusionHead(feature_sets=[["emobase", "colour"], ["colour"]], hidden=16, **FAST)
    _round_trip(fusion, tmp_path, x, y, lambda h: h.predict_proba(x))
    build_pairs(labels.drop(columns="split")).to_csv(tmp_path / "pairs.csv", index=False)
    data = load_pairs(store, tmp_path / "pairs.csv", "colour", "emobase")
    head = CorrespondHead(video_features="colour", music_features="emobase", **FAST)
    _round_trip(head, tmp_path, data.x, data.y, lambda h: [h.predict_proba(data.x), h.embed_side("music", data.x["music"])])


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(clips):
    _, data = clips
    head = LstmHead(features=["colour"], hidden=8, max_epochs=2, seed=3).fit(data[:8])
    copy = clone(head)
    assert copy.get_params() == head.get_params() and not hasattr(copy, "model_")
    assert copy.set_params(hidden=4).hidden == 4 and head.hidden == 8


def test_features_made_another_way_are_refused_in_one_line(clips, demo_corpus, tmp_path):
    store, data = clips
    head = with_provenance(LassoHead(features=["colour"]).fit(data), store, ["colour"])
    check_features(head.provenance_, store, "same store")  # the training store itself passes
    run_cli("extract", demo_corpus, "--store", tmp_path / "fps4.zarr", "-e", "colour", "-o", "colour.fps=4", "-j", "1")
    with pytest.raises(MvfxError, match=r"colour config is .*fps.*4\.0.*trained with .*2\.0") as error:
        check_features(head.provenance_, open_store(tmp_path / "fps4.zarr"), "fps4.zarr")
    assert "\n" not in str(error.value)
    run_cli("extract", demo_corpus, "--store", tmp_path / "random.zarr", "-e", "vggish", "--random-weights", "-j", "1")
    real = {"vggish": {**head.provenance_["colour"], "extractor": "vggish", "weights": "sha256:" + "0" * 64}}
    real["vggish"] |= {k: open_store(tmp_path / "random.zarr").attrs("vggish")[k] for k in ("version", "config", "dim")}
    with pytest.raises(MvfxError, match="vggish features come from random weights; the model was trained on real ones"):
        check_features(real, open_store(tmp_path / "random.zarr"), "random.zarr")


@pytest.fixture(scope="module")
def fusion_run(heads_corpus, tmp_path_factory):
    """The fusion classifier trained twice with one command line (for reproducibility), and its run folder."""
    runs = tmp_path_factory.mktemp("runs")
    for name in ("a", "b"):
        result = run_cli("train", "fusion", heads_corpus / "s.zarr", "--labels", heads_corpus / "corpus" / "labels.csv",
                         "-f", "emobase,colour", "--ensemble", "colour", "--folds", "4", "--out", runs / name)
        assert result.exit_code == 0, result.stderr
    return runs


def test_a_fresh_process_loads_a_saved_model(fusion_run):
    import subprocess
    import sys

    code = f"from mvfx.heads.saved import load_head; print(type(load_head({str(fusion_run / 'a')!r})).__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "FusionHead"


def test_the_same_command_twice_gives_identical_metrics(fusion_run):
    a, b = (json.loads((fusion_run / n / "metrics.json").read_text()) for n in ("a", "b"))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


# Measured: the 24-clip model puts 6 of 6 clips of another seed in their class (ensemble of emobase+colour and colour).
def test_predict_on_videos_the_model_never_saw(fusion_run, tmp_path):
    unseen = tmp_path / "unseen"
    write_demo_corpus(unseen, n_clips=6, seconds=8.0, seed=7, size=(160, 90))
    result = run_cli("predict", fusion_run / "a", unseen, "--out", tmp_path / "pred", "--labels", unseen / "labels.csv", "-j", "1")
    assert result.exit_code == 0, result.stderr
    table = np.genfromtxt(tmp_path / "pred" / "predictions.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    truth = dict(np.genfromtxt(unseen / "labels.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")[["clip_id", "label"]])
    right = sum(truth[row["clip_id"]] == row["predicted"] for row in table)
    assert len(table) == 6 and right >= 4  # chance is 1 in 6
    probabilities = np.array([[row[n] for n in table.dtype.names if n.startswith("p_")] for row in table])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert "accuracy against" in result.stderr
    for clip in truth:
        assert (tmp_path / "pred" / "timelines" / f"{clip}.png").stat().st_size > 5000
    again = run_cli("predict", fusion_run / "a", tmp_path / "pred" / "features.zarr", "--out", tmp_path / "again")
    assert again.exit_code == 0 and (tmp_path / "again" / "predictions.csv").read_text() == (tmp_path / "pred" / "predictions.csv").read_text()


def test_every_clip_gets_a_row_or_is_named_with_the_reason(fusion_run, odd_corpus, tmp_path):
    """Clips that could not be predicted were only counted (and a failed extraction not even that)."""
    import pandas as pd

    from mvfx.pipeline.corpus import discover

    result = run_cli("predict", fusion_run / "a", odd_corpus, "--out", tmp_path / "pred", "-j", "1", "--timelines", "0")
    assert result.exit_code == 1, result.output
    predicted = pd.read_csv(tmp_path / "pred" / "predictions.csv", dtype=str)
    missing = pd.read_csv(tmp_path / "pred" / "not_predicted.csv", dtype=str)
    assert sorted(predicted["clip_id"]) == ["clip_000", "clip_001"]
    assert sorted([*predicted["clip_id"], *missing["clip_id"]]) == sorted(c.clip_id for c in discover(odd_corpus).clips)
    reasons = dict(zip(missing["clip_id"], missing["reason"]))
    assert reasons["audio_only"].startswith("no colour features (") and "failed: " in reasons["audio_only"]
    assert f"{len(missing)} clips not predicted" in result.stderr
    assert all(f"{clip}: {why}" in result.stderr for clip, why in reasons.items())


def test_regression_predicts_a_curve_over_time(heads_corpus, demo_corpus, tmp_path):
    run = tmp_path / "lasso"
    result = run_cli("train", "lasso", heads_corpus / "s.zarr", "--labels", heads_corpus / "corpus" / "annotations.csv",
                     "-f", "colour", "--folds", "2", "--out", run)
    assert result.exit_code == 0, result.stderr
    result = run_cli("predict", run, demo_corpus, "--out", tmp_path / "pred", "-j", "1")
    assert result.exit_code == 0, result.stderr
    lines = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "clip_id,start_s,end_s,predicted_arousal" and len(lines) > 6 * 7  # 4 s clips, 0.5 s steps
    assert len(list((tmp_path / "pred" / "timelines").glob("*.png"))) == 6


@pytest.mark.parametrize("args, message", [
    (["train", "lstm", "STORE", "--labels", "x.csv", "-f", "a,b", "--fusion", "pair", "--pretrain-labels", "foo", "--out", "o"],
     "--pretrain-labels"),
    (["predict", "NOT_A_RUN", "STORE", "--out", "o"], "no saved model"),
    (["train", "lstm", "STORE", "--labels", "x.csv", "-f", "a,b", "--fusion", "none", "--out", "o"], "exactly one feature set"),
])
def test_user_errors_in_head_commands_are_one_line(heads_corpus, tmp_path, args, message):
    args = [str(heads_corpus / "s.zarr") if a == "STORE" else str(tmp_path / a) if a in ("NOT_A_RUN", "o") else a for a in args]
    result = run_cli(*args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) <= 3


def test_predicting_on_the_training_store_reproduces_the_training_inputs(tmp_path):
    """Training averaged rows by plain mean, prediction by duration: rows [0,1]->0 and [1,5]->1 gave 0.5 and 0.8.
    One function now pools both (``align.clip_mean``); a head predicting its own training store sees its inputs."""
    import pandas as pd

    from mvfx.heads.predict import predict_store
    from mvfx.stores import open_writer

    rng = np.random.default_rng(0)
    description = {"extractor": "irregular", "version": "1", "dim": 2, "feature_names": ["a", "b"], "config": {}, "weights": "none"}
    times = np.array([[0.0, 1.0], [1.0, 5.0], [5.0, 5.5]])  # per-shot rows: unequal lengths
    with open_writer(tmp_path / "s.zarr") as writer:
        writer.register_extractor(description)
        for k in range(12):
            values = rng.normal(size=(3, 2)).astype(np.float32) + (k % 2)
            writer.commit(writer.staging().stage("irregular", f"c{k:02d}", values, times, "float32"))
            writer.set_clip({"clip_id": f"c{k:02d}", "path": f"/x/c{k:02d}.mp4", "duration_s": 5.5, "status": "ok"})
    store = open_store(tmp_path / "s.zarr")
    ids = store.clip_ids("irregular")
    x = {"irregular": clip_level_features(store, "irregular", ids)}
    values = store.read("irregular", "c00")[0]
    np.testing.assert_allclose(x["irregular"][0], (values[0] * 1 + values[1] * 4 + values[2] * 0.5) / 5.5, rtol=1e-6)
    head = FusionHead(feature_sets=[["irregular"]], hidden=8, **FAST).fit(x, np.array(["even", "odd"] * 6))
    with_provenance(head, store, ["irregular"]).training_ = {"task": "classification", "target": "label", "classes": list(head.classes_)}
    table = predict_store(head, store, tmp_path / "out").table().set_index("clip_id").loc[ids]
    expected = pd.DataFrame(head.predict_proba(x), index=ids, columns=[f"p_{c}" for c in head.classes_])
    np.testing.assert_allclose(table[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
