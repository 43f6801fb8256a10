"""`mvfx predict` streams clips through the head: the table each head gives directly, in the columns it declares,
every other clip named with the reason, bounded time lines, neighbours ranked in blocks; heads validate their
parameters and build their configs by field name."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli
from sklearn.base import clone

from mvfx.heads import predict
from mvfx.heads.application import ClipPrediction, StoreClip, Timeline, grid
from mvfx.heads.data.align import align
from mvfx.heads.data.dataset import ClipData, clip_level_features
from mvfx.heads.estimator import HEADS, Head, by_name
from mvfx.heads.models import correspond
from mvfx.heads.models.correspond import CorrespondHead, nearest
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.models.lasso import LassoHead
from mvfx.heads.models.lstm import LstmHead
from mvfx.heads.models.mvf import MvfHead
from mvfx.heads.predict import predict_store
from mvfx.heads.provenance import with_provenance
from mvfx.heads.saved import HEAD_MODULES, load_head, save
from mvfx.heads.torch_fit import FitConfig
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store, open_writer

FAST = {"max_epochs": 15, "patience": 5, "lr": 1e-3}
N_CLIPS = 40
SPECS = {"a": (6, 0.5), "b": (3, 1.0)}  # extractor: (dim, hop in seconds): two time grids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """40 small clips of unequal length with two feature sets on different grids (one clip without "b")."""
    path = tmp_path_factory.mktemp("stream") / "s.zarr"
    rng = np.random.default_rng(0)
    with open_writer(path) as writer:
        for name, (dim, _) in SPECS.items():
            writer.register_extractor({"extractor": name, "version": "1", "dim": dim, "feature_names": [f"{name}{i}" for i in range(dim)],
                                       "config": {}, "weights": "none"})
        staging = writer.staging()
        for k in range(N_CLIPS + 1):
            clip, length = f"c{k:03d}", 5.0 - (k % 3) * 0.7
            for name, (dim, hop) in SPECS.items():
                if name == "b" and k == N_CLIPS:
                    continue
                starts = np.arange(0.0, length - 1e-9, hop)
                times = np.stack([starts, np.minimum(starts + hop, length)], axis=1)
                values = (rng.normal(size=(len(times), dim)) + (k % 2)).astype(np.float32)
                values[values > 2.5] = np.nan  # missing values, as "no face" gives
                writer.commit(staging.stage(name, clip, values, times, "float32"))
            writer.set_clip({"clip_id": clip, "path": f"/x/{clip}.mp4", "duration_s": length, "status": "ok"})
        writer.compact()
    return open_store(path)


@pytest.fixture(scope="module")
def ids(store):
    return sorted(set(store.clip_ids("a")) & set(store.clip_ids("b")))


@pytest.fixture(scope="module")
def fitted(store, ids):
    """A classifier, a regressor and both correspondence models, fitted in seconds on the store's clips."""
    x = {e: clip_level_features(store, e, ids) for e in SPECS}
    y = np.array(["even", "odd"] * (len(ids) // 2))
    fusion = FusionHead(feature_sets=[["a", "b"], ["b"]], member_model="logistic", **FAST).fit(x, y)
    fusion.training_ = {"task": "classification", "target": "label", "classes": list(fusion.classes_)}
    clips = [ClipData(c, store.read("a", c)[1], {"a": np.nan_to_num(store.read("a", c)[0])}, np.nan_to_num(store.read("a", c)[0][:, 0]) * 0.3)
             for c in ids]
    lasso = LassoHead(features=["a"]).fit(clips)
    lasso.training_ = {"task": "regression", "target": "arousal", "grid_step_s": 0.5}
    heads = {"fusion": (fusion, ["a", "b"]), "lasso": (lasso, ["a"])}
    rng = np.random.default_rng(1)
    pairs = {"video": x["a"], "music": x["b"][rng.permutation(len(ids))], "video_label": y, "music_label": y, "group": np.arange(len(ids))}
    for objective in ("classify", "retrieve"):
        head = CorrespondHead(video_features="a", music_features="b", objective=objective, **FAST).fit(pairs, rng.integers(0, 2, len(ids)))
        head.training_ = {"task": "correspondence", "labels": {}}
        heads[objective] = (head, ["a", "b"])
    for head, extractors in heads.values():
        with_provenance(head, store, extractors)
    return {name: head for name, (head, _) in heads.items()}


def _expected(name: str, head, store) -> pd.DataFrame:
    """What each head gives directly for the whole store at once (the pre-streaming computation)."""
    ids = sorted(set.intersection(*(set(store.clip_ids(e)) for e in head.provenance_)))
    if name == "lasso":
        rows = []
        for c in ids:
            values, times = store.read("a", c)
            steps = grid(float(times[-1, 1]), 0.5)
            features = align(values, times, steps)
            keep = np.isfinite(features).all(axis=1)
            curve = head.predict([ClipData(c, steps[keep], {"a": features[keep]})])[0]
            rows += [{"clip_id": c, "start_s": a, "end_s": b, "predicted_arousal": p} for (a, b), p in zip(steps[keep], curve)]
        return pd.DataFrame(rows)
    x = {e: clip_level_features(store, e, ids) for e in SPECS}
    if name == "fusion":
        proba = head.predict_proba(x)
        return pd.DataFrame({"clip_id": ids, "predicted": np.array(head.classes_)[proba.argmax(axis=1)],
                             **{f"p_{c}": proba[:, k] for k, c in enumerate(head.classes_)}})
    both = {"video": x["a"], "music": x["b"]}
    scores = head.pair_scores(head.embed_side("video", both["video"]), head.embed_side("music", both["music"]))
    best = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    return pd.DataFrame({"clip_id": ids, "p_match_own_music": head.predict_proba(both)[:, 1],
                         "best_music": [";".join(ids[j] for j in row) for row in best]})


@pytest.mark.parametrize("name", ["fusion", "lasso", "classify", "retrieve"])
def test_streamed_predictions_are_the_heads_own_outputs(name, fitted, store, tmp_path, monkeypatch):
    head = fitted[name]
    monkeypatch.setattr(correspond, "SCORE_BLOCK", {"classify": (6, 9), "retrieve": (5, 7)})  # many blocks of neighbours
    monkeypatch.setattr(correspond, "EMBED_BATCH", 11)
    streamed = predict_store(head, store, tmp_path / "streamed", max_timelines=0)
    table, expected = streamed.table(), _expected(name, head, store)
    assert list(table.columns) == list(expected.columns) == head.prediction_columns() and streamed.clips == expected["clip_id"].nunique()
    assert streamed.clips == N_CLIPS + (name == "lasso")  # the clip without "b" features too, for a model that reads only "a"
    assert streamed.not_predicted == ({} if name == "lasso" else {f"c{N_CLIPS:03d}": "no b features (none in the store)"})
    for column in expected:
        if not pd.api.types.is_numeric_dtype(expected[column]):
            assert table[column].tolist() == expected[column].tolist(), column
        else:
            np.testing.assert_allclose(table[column], expected[column], rtol=1e-5, atol=1e-6, err_msg=column)
    assert not (tmp_path / "streamed" / "timelines").exists()


@pytest.mark.parametrize("n_query, n_gallery, k, block", [(30, 40, 3, (7, 9)), (30, 40, 3, (30, 40)), (5, 2, 3, (2, 1)),
                                                          (12, 50, 5, (1, 3)), (1, 1, 3, (4, 4))])
def test_neighbours_in_blocks_are_the_stable_argsort_of_all_scores(n_query, n_gallery, k, block):
    rng = np.random.default_rng(n_query * n_gallery)
    scores = rng.integers(0, 4, (n_query, n_gallery)).astype(np.float32)  # many ties: the lower index wins, as argsort's
    scores[0, :2] = np.nan
    expected = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), axis=1, kind="stable")[:, :k]
    called = []

    def score(q, g):
        called.append((q.stop - q.start, g.stop - g.start))
        return scores[q, g]

    np.testing.assert_array_equal(nearest(score, n_query, n_gallery, k, block), expected)
    assert max(q for q, _ in called) <= block[0] and max(g for _, g in called) <= block[1]


def test_time_lines_are_drawn_for_the_first_clips_only_unless_asked(fitted, store, ids, tmp_path):
    head = fitted["fusion"]
    some = predict_store(head, store, tmp_path / "some", max_timelines=3)
    assert some.timelines == 3 and sorted(p.stem for p in (tmp_path / "some" / "timelines").glob("*.png")) == ids[:3]
    every = predict_store(head, store, tmp_path / "all", ids[:5], max_timelines=None)
    assert every.timelines == every.clips == 5 and len(list((tmp_path / "all" / "timelines").glob("*.png"))) == 5
    assert predict.MAX_TIMELINES >= 24  # a small store (the demo's) still gets every time line by default


def test_the_command_bounds_time_lines_and_says_so(fitted, store, ids, tmp_path, monkeypatch):
    import mvfx.commands.predict as command

    assert command.TIMELINES == predict.MAX_TIMELINES
    save(fitted["fusion"], tmp_path / "run" / "model")
    monkeypatch.setattr(command, "SHOWN", 4)
    result = run_cli("predict", tmp_path / "run", store.location, "--out", tmp_path / "out", "--timelines", "2")
    assert result.exit_code == 1, result.output  # every clip predicted but the one without "b" features, which is named
    assert f"1 clip not predicted -> {tmp_path / 'out' / 'not_predicted.csv'}: c040: no b features (none in the store)" in result.stderr
    assert len(list((tmp_path / "out" / "timelines").glob("*.png"))) == 2
    assert "time lines of the first 2; --timelines all" in result.stderr and f"and {len(ids) - 4} more clips" in result.stdout
    bad = run_cli("predict", tmp_path / "run", store.location, "--out", tmp_path / "bad", "--timelines", "some")
    assert bad.exit_code != 0 and "'some': give a number of clips" in bad.output
    assert "--timelines N|all" in run_cli("predict", "--help").output


def test_a_new_head_predicts_a_store_without_changes_to_the_driver(store, tmp_path):
    """What ``mvfx predict`` needs of a head: ``predict_clip`` (rows, and a time line computed when drawn)."""

    class FirstFeature(Head):
        kind = "first_feature"

        def prediction_columns(self) -> list[str]:
            return ["clip_id", "a0"]

        def predict_clip(self, clip: StoreClip, window_s: float = 4.0) -> ClipPrediction:
            values, times = clip.blocks["a"]
            return ClipPrediction(clip.clip_id, [{"clip_id": clip.clip_id, "a0": float(np.nanmean(values[:, 0]))}],
                                  lambda: Timeline(times, {"a0": values[:, 0]}, clip.clip_id, "a0"))

    head = with_provenance(FirstFeature(), store, ["a"])
    result = predict_store(head, store, tmp_path / "p", max_timelines=2)
    expected = [np.nanmean(store.read("a", c)[0][:, 0]) for c in store.clip_ids("a")]
    np.testing.assert_allclose(result.table()["a0"], expected, rtol=1e-6)
    assert result.clips == N_CLIPS + 1 and len(list((tmp_path / "p" / "timelines").glob("*.png"))) == result.timelines == 2


def test_a_row_with_a_column_the_head_did_not_declare_stops_the_run(store, tmp_path):
    """The header came from the first clip's rows, so a later clip with other keys shifted its values under them."""

    class Drifting(Head):
        kind = "drifting"

        def prediction_columns(self) -> list[str]:
            return ["clip_id", "a0"]

        def predict_clip(self, clip: StoreClip, window_s: float = 4.0) -> ClipPrediction:
            row = {"clip_id": clip.clip_id, "a0": 1.0} | ({"a1": 2.0} if clip.clip_id == "c003" else {})
            return ClipPrediction(clip.clip_id, [row])

    with pytest.raises(ValueError, match="dict contains fields not in fieldnames: 'a1'"):
        predict_store(with_provenance(Drifting(), store, ["a"]), store, tmp_path / "p")


def test_a_run_folder_saved_before_predicts_and_one_without_its_grid_says_so(fitted, store, tmp_path):
    import json

    folder = save(fitted["lasso"], tmp_path / "old" / "model")
    loaded = load_head(tmp_path / "old")
    assert predict_store(loaded, store, tmp_path / "p", max_timelines=0).table().equals(
        predict_store(fitted["lasso"], store, tmp_path / "q", max_timelines=0).table())
    description = json.loads((folder / "model.json").read_text())
    description["training"].pop("grid_step_s")
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(MvfxError, match=r"^lasso model without grid_step_s in its training facts; retrain it") as error:
        predict_store(load_head(tmp_path / "old"), store, tmp_path / "r")
    assert "\n" not in str(error.value)


# --- parameters: validated when fitted, configs built by name ------------------------------------------------
def _all_heads() -> dict[str, type]:
    """The built-in heads (a test or a docs example may register more)."""
    import importlib

    for module in HEAD_MODULES:
        importlib.import_module(f"mvfx.heads.{module}")
    return {kind: cls for kind, cls in HEADS.items() if cls.__module__.startswith("mvfx.heads.models.")}


def test_every_parameter_of_every_head_has_constraints():
    heads = _all_heads()
    assert set(heads) == {"lasso", "lstm", "fusion", "correspond", "mvf"}
    for cls in heads.values():
        assert set(cls().get_params()) == set(cls._parameter_constraints), cls.__name__


VALID = {LassoHead: {"features": ["a"]}, LstmHead: {"features": ["a"]}, FusionHead: {"feature_sets": [["a", "b"], ["b"]]},
         CorrespondHead: {"video_features": "a", "music_features": "b"}, MvfHead: {"music": "A0"}}
BAD = [
    (LassoHead, "features", None), (LassoHead, "features", "a"), (LassoHead, "inner_folds", 1), (LassoHead, "seed", -1),
    (LstmHead, "fusion", "sideways"), (LstmHead, "hidden", 0), (LstmHead, "dropout", 1.0), (LstmHead, "lr", 0.0),
    (LstmHead, "val_fraction", 0.0), (LstmHead, "seq_len", 2.5), (LstmHead, "batch_size", True),
    (FusionHead, "feature_sets", [["a"], []]), (FusionHead, "member_model", "forest"), (FusionHead, "class_weights", "even"),
    (FusionHead, "patience", -1), (FusionHead, "lr", float("nan")),
    (CorrespondHead, "objective", "match"), (CorrespondHead, "margin", 0), (CorrespondHead, "emotion_branches", "yes"),
    (CorrespondHead, "music_features", None), (CorrespondHead, "mcb_dim", 0),
    (MvfHead, "music", "A9"), (MvfHead, "frame_size", 0), (MvfHead, "mmtm", 1), (MvfHead, "max_epochs", 0),
]


@pytest.mark.parametrize("cls, name, value", BAD, ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in BAD])
def test_a_bad_parameter_is_one_line_when_fitted(cls, name, value):
    head = cls(**{**VALID[cls], name: value})
    with pytest.raises(MvfxError) as error:
        head.fit(None, None)  # refused before the data is looked at
    message = str(error.value)
    assert message.startswith(f"{cls.__name__}: {name}={value!r} is not valid; it must be ") and "\n" not in message


@pytest.mark.parametrize("cls", list(VALID))
def test_the_defaults_with_features_given_are_valid(cls):
    cls(**VALID[cls]).check_params()


@pytest.mark.parametrize("cls", [FusionHead, LstmHead, CorrespondHead])
def test_configs_are_built_by_field_name(cls):
    """Every config field gets the head's parameter of that name, whatever the order of either."""
    fields = dataclasses.fields(cls().config)
    distinct = {}
    for k, f in enumerate(fields):
        default = getattr(cls(), f.name)
        if isinstance(default, bool):
            distinct[f.name] = not default
        elif isinstance(default, int):
            distinct[f.name] = 100 + k
        elif isinstance(default, float):
            distinct[f.name] = (k + 1) / 1000
    head = cls(**VALID[cls], **distinct)
    config = head.config
    assert {f.name: getattr(config, f.name) for f in fields} == {f.name: getattr(head, f.name) for f in fields}
    fit_config = by_name(FitConfig, config)
    assert all(getattr(fit_config, f.name) == distinct[f.name] for f in dataclasses.fields(FitConfig))
    assert clone(head).config == config


def test_lstm_pretraining_targets_are_a_named_argument(store, ids):
    clips = [ClipData(c, store.read("a", c)[1], {"a": np.nan_to_num(store.read("a", c)[0])}, np.zeros(len(store.read("a", c)[1])))
             for c in ids[:6]]
    with pytest.raises(MvfxError, match="give PAIR's per-modality ratings as modality_targets=") as error:
        LstmHead(features=["a"], hidden=4, max_epochs=1).fit(clips, [{"a": c.target} for c in clips])
    assert "\n" not in str(error.value)


def test_every_head_standardises_with_one_standard_scaler(fitted, store, ids):
    """Three standardisers (dataset.scaling, the LSTM's own, LASSO's StandardScaler) are one: scikit-learn's, fitted on
    the training rows (NaN ignored), NaN scaled to 0."""
    from sklearn.preprocessing import StandardScaler

    from mvfx.heads.standardiser import standardise

    x = {e: clip_level_features(store, e, ids) for e in SPECS}
    clips = [ClipData(c, store.read("a", c)[1], {"a": np.nan_to_num(store.read("a", c)[0])}, np.zeros(len(store.read("a", c)[1])))
             for c in ids[:8]]
    lstm = LstmHead(features=["a"], hidden=4, max_epochs=1).fit(clips)
    scalers = {"fusion": (fitted["fusion"].members_[1].scalers[0], x["b"]), "lasso": (fitted["lasso"].scaler_, None),
               "correspond": (fitted["classify"].scalers_["music"], None), "lstm": (lstm.scalers_[0], None)}
    for name, (scaler, training) in scalers.items():
        assert isinstance(scaler, StandardScaler), name
        if training is not None:  # the fusion member saw every clip: its scaler is StandardScaler's own of them
            np.testing.assert_allclose(standardise(scaler, training), np.nan_to_num(StandardScaler().fit(training).transform(training)),
                                       rtol=1e-5, atol=1e-5)
