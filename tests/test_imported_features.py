"""Collaborators' features: a MuVi-style CSV folder with a broken header, imported and used by every head."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

import mvfx.extractors as extractors
from mvfx.stores import open_store

EMOBASE_NAMES = extractors.create("emobase").feature_names


def _muvi_style(store, folder, clip_ids):
    """One CSV per clip as MuVi publishes them: an index column, one name repeated for every feature, text columns."""
    folder.mkdir(parents=True)
    for clip_id in clip_ids:
        values, _ = store.read("emobase", clip_id)
        table = pd.DataFrame(values.astype(np.float64), columns=["emobase"] * values.shape[1])
        table.insert(0, "liveturn_0", "liveturn_0")
        table["unassigned"] = "unassigned"
        table.to_csv(folder / f"{clip_id}.csv")  # pandas writes the unnamed index column


def _plain(store, folder, clip_ids):
    """One CSV per clip with a time column and proper names: what `store export` users hand around."""
    folder.mkdir(parents=True)
    for clip_id in clip_ids:
        values, times = store.read("emobase", clip_id)
        table = pd.DataFrame(values, columns=EMOBASE_NAMES)
        table.insert(0, "time", times[:, 0])
        table.to_csv(folder / f"{clip_id}.csv", index=False)


@pytest.fixture(scope="module")
def muvi_folder(heads_corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("muvi") / "csv"
    s = open_store(heads_corpus / "s.zarr")
    _muvi_style(s, folder, s.clip_ids("emobase")[:6])
    return folder


def test_broken_header_is_explained_in_one_line_and_fixed_by_the_documented_options(muvi_folder, heads_corpus, tmp_path):
    store = tmp_path / "muvi.zarr"
    args = ["store", "import-features", muvi_folder, "--name", "emobase", "--store", store, "--hop", "0.5"]
    repeated = run_cli(*args)
    assert repeated.exit_code == 2 and "column names repeat ('emobase' x988)" in repeated.stderr and "--names-from" in repeated.stderr
    assert len(repeated.stderr.strip().splitlines()) == 1 and len(repeated.stderr) < 400
    assert not store.exists(), "an import that stored nothing leaves nothing behind"
    extra = run_cli(*args, "--names-from", "emobase")
    assert extra.exit_code == 2 and "990 feature columns but --names-from gives 988 names" in extra.stderr
    text = run_cli(*args, "--drop-columns", "unassigned", "--names-from", "emobase")
    assert text.exit_code == 2 and "989 feature columns but --names-from gives 988 names" in text.stderr
    fixed = run_cli(*args, "--drop-columns", "liveturn_0,unassigned", "--names-from", "emobase")
    assert fixed.exit_code == 0, fixed.stderr
    imported, original = open_store(store), open_store(heads_corpus / "s.zarr")
    assert imported.attrs("emobase")["feature_names"] == EMOBASE_NAMES  # never 'emobase.1', 'emobase.2', ...
    clip_id = imported.clip_ids("emobase")[0]
    np.testing.assert_array_equal(imported.read("emobase", clip_id)[0], original.read("emobase", clip_id)[0])
    durations = imported.clips().set_index("clip_id")["duration_s"]
    assert (durations == 8.0).all()  # 16 rows of 0.5 s: the last row's end
    moved = tmp_path / "elsewhere"
    shutil.copytree(muvi_folder, moved)
    again = run_cli("store", "import-features", moved, "--name", "emobase", "--store", store, "--hop", "0.5",
                    "--drop-columns", "liveturn_0,unassigned", "--names-from", "emobase")
    assert again.exit_code == 0, again.stderr  # the source folder is provenance, not configuration
    assert imported.attrs("emobase")["source"] == str(muvi_folder.resolve())


def test_text_columns_are_named_in_one_line(muvi_folder, tmp_path):
    result = run_cli("store", "import-features", muvi_folder, "--name", "e", "--store", tmp_path / "s.zarr", "--hop", "0.5",
                     "--drop-columns", "unassigned", "--names-from", "emobase")
    assert result.exit_code == 2  # 989 columns for 988 names: the count is checked before the content
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "a.csv").write_text("time,energy,mood\n0,1.0,happy\n0.5,2.0,sad\n")
    result = run_cli("store", "import-features", folder, "--name", "e", "--store", tmp_path / "s.zarr")
    assert result.exit_code == 2 and "non-numeric columns 3 ('mood'); drop them with --drop-columns" in result.stderr


def _real_muvi(folder, rows=4):
    """MuVi's emobase CSVs byte for byte in layout: header ',' + one emobase name x990 (another in each file),
    then per row an index, liveturn_N, 988 numbers, unassigned. Returns clip id -> the numbers written."""
    folder.mkdir(parents=True)
    rng, written = np.random.default_rng(6), {}
    for k, clip_id in enumerate(["song_a", "song_b", "song_c"]):
        values = rng.normal(size=(rows, 988)).astype(np.float32)
        lines = ["," + ",".join([EMOBASE_NAMES[100 * k]] * 990)]
        lines += [f"{r},liveturn_{r},{','.join(repr(float(v)) for v in values[r])},unassigned" for r in range(rows)]
        (folder / f"{clip_id}.csv").write_text("\n".join(lines) + "\n")
        written[clip_id] = values
    return written


def test_real_muvi_layout_imports_as_it_is(tmp_path):
    folder = tmp_path / "muvi"
    written = _real_muvi(folder)
    (folder / "short.csv").write_text("," + ",".join(["pcm_intensity_sma_max"] * 989) + "\n" + ",".join(["0"] * 990) + "\n")
    args = ["store", "import-features", folder, "--name", "emobase", "--hop", "0.5", "--names-from", "emobase"]
    by_name = run_cli(*args, "--store", tmp_path / "a.zarr", "--drop-columns", "liveturn_0,unassigned")
    assert by_name.exit_code == 2 and "nothing to drop at 'liveturn_0', 'unassigned'" in by_name.stderr
    assert "--drop-text-columns" in by_name.stderr and len(by_name.stderr.strip().splitlines()) == 1
    for store, options in (("text.zarr", ["--drop-text-columns"]), ("positions.zarr", ["--drop-positions", "2,991"])):
        result = run_cli(*args, "--store", tmp_path / store, *options)
        assert result.exit_code == 1, result.stderr  # short.csv: the only file skipped
        assert "short.csv: 990 columns, not 991 like the other files" in result.stderr
        assert "imported 3 clips as emobase" in result.stderr
        s = open_store(tmp_path / store)
        assert s.attrs("emobase")["feature_names"] == EMOBASE_NAMES and s.clip_ids("emobase") == sorted(written)
        for clip_id, values in written.items():
            np.testing.assert_array_equal(s.read("emobase", clip_id)[0], values)
        assert s.verify() == []
    noted = "note: --drop-text-columns dropped columns 2 (e.g. 'liveturn_0'), 991 (e.g. 'unassigned') of song_a.csv"
    assert noted in run_cli(*args, "--store", tmp_path / "again.zarr", "--drop-text-columns").stderr


def test_rows_that_would_be_stored_wrong_are_refused_by_line_and_column(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    files = {
        "good": "time,a,b\n0,1,2\n0.5,3,\n",  # an empty cell is a missing value: NaN
        "short_row": "time,a,b\n0,1,2\n0.5,3\n",
        "infinite": "time,a,b\n0,1,2\n0.5,-inf,4\n",
        "beyond_float32": "time,a,b\n0,1,2\n0.5,1e39,4\n",
        "bad_cell": "time,a,b\n0,1,2\n0.5,3,4\n1.0,3,x4\n",
        "single_row": "time,a,b\n0,1,2\n",
        "no_time": "time,a,b\n0,1,2\n,3,4\n",
        "backwards": "time,a,b\n0,1,2\n0.5,3,4\n0.4,5,6\n",
    }
    for clip_id, text in files.items():
        (folder / f"{clip_id}.csv").write_text(text)
    result = run_cli("store", "import-features", folder, "--name", "hand", "--store", tmp_path / "s.zarr")
    assert result.exit_code == 1 and "imported 1 clips as hand" in result.stderr
    for expected in ("short_row.csv: line 3 has 2 fields, the header 3",
                     "infinite.csv: line 3, column 2 ('a'): '-inf' is infinite",
                     "beyond_float32.csv: line 3, column 2 ('a'): '1e39' is infinite or beyond float32",
                     "bad_cell.csv: line 4, column 3 ('b'): 'x4' is not a number",
                     "single_row.csv: one row with a time column, so the row's length is unknown; import with a fixed --hop",
                     "no_time.csv: line 3: the time '' is not a finite number",
                     "backwards.csv: line 4: the time column is not strictly increasing"):
        assert expected in result.stderr
    assert "drop them" not in result.stderr  # advice to drop is for columns of text only
    s = open_store(tmp_path / "s.zarr")
    np.testing.assert_array_equal(s.read("hand", "good")[0], [[1, 2], [3, np.nan]])
    assert sorted(s.failures()["clip_id"]) == sorted(set(files) - {"good"})
    assert s.verify() == []


def test_drop_options_that_match_nothing_or_leave_nothing_are_one_line_errors(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "a.csv").write_text("time,a,b\n0,1,2\n0.5,3,4\n")
    args = ["store", "import-features", folder, "--name", "hand", "--store", tmp_path / "s.zarr"]
    for options, expected in ((["--drop-columns", "a,b"], "no feature column left of the 3 columns"),
                              (["--drop-positions", "2,3"], "no feature column left of the 3 columns"),
                              (["--drop-columns", "a,nope"], "nothing to drop at 'nope'"),
                              (["--drop-positions", "4"], "nothing to drop at position 4 (the header has 3 columns)"),
                              (["--drop-positions", "#2"], "give 1-based column numbers")):
        result = run_cli(*args, *options)
        assert result.exit_code == 2 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.zarr").exists()


def test_verify_reports_inf_where_nan_is_allowed_and_feature_sets_of_dim_0(tmp_path):
    from mvfx.stores import open_writer

    store = tmp_path / "s.zarr"
    times = np.array([[0.0, 0.5], [0.5, 1.0]])
    with open_writer(store) as writer:
        for name, dim, values in (("gaps", 2, [[np.nan, 1.0], [2.0, 3.0]]), ("blowup", 2, [[np.inf, 1.0], [-np.inf, np.nan]]),
                                  ("empty", 0, np.zeros((2, 0)))):
            writer.register_extractor({"extractor": name, "version": "imported", "dim": dim, "config": {}, "weights": "none",
                                       "feature_names": ["a", "b"][:dim], "nan_allowed": True})
            writer.commit(writer.staging().stage(name, "clip", np.asarray(values, np.float32), times, "float32"))
        writer.set_clip({"clip_id": "clip", "path": "/x.csv", "status": "ok", "duration_s": 1.0})
    result = run_cli("store", "verify", store)
    assert result.exit_code == 1 and "2 problems" in result.stdout
    assert "blowup/clip: values hold Inf (2 cells)" in result.stdout and "empty: dim 0" in result.stdout
    assert "gaps" not in result.stdout  # NaN is allowed there


@pytest.fixture(scope="module")
def imported_copy(heads_corpus, tmp_path_factory):
    """The heads corpus's emobase features exported to CSVs and imported into a new store."""
    root = tmp_path_factory.mktemp("imported")
    s = open_store(heads_corpus / "s.zarr")
    _plain(s, root / "csv", s.clip_ids("emobase"))
    result = run_cli("store", "import-features", root / "csv", "--name", "emobase", "--store", root / "s.zarr")
    assert result.exit_code == 0, result.stderr
    return root / "s.zarr"


@pytest.mark.slow
def test_lasso_on_imported_features_gives_the_numbers_of_the_original(heads_corpus, imported_copy, tmp_path):
    labels = heads_corpus / "corpus" / "annotations.csv"
    for store, out in ((heads_corpus / "s.zarr", tmp_path / "original"), (imported_copy, tmp_path / "imported")):
        result = run_cli("train", "lasso", store, "--labels", labels, "-f", "emobase", "--out", out, "--folds", "3")
        assert result.exit_code == 0, result.stderr
    original = json.loads((tmp_path / "original" / "metrics.json").read_text())
    imported = json.loads((tmp_path / "imported" / "metrics.json").read_text())
    assert imported["n_clips"] == original["n_clips"] == 24
    for metric in ("ccc", "pearson", "rmse"):
        assert imported["models"]["lasso"]["aggregate"][metric]["mean"] == pytest.approx(
            original["models"]["lasso"]["aggregate"][metric]["mean"], abs=1e-9)


def test_lstm_and_fusion_train_on_imported_features(heads_corpus, imported_copy, tmp_path):
    corpus = heads_corpus / "corpus"
    lstm = run_cli("train", "lstm", imported_copy, "--labels", corpus / "annotations.csv", "-f", "emobase", "--out", tmp_path / "lstm",
                   "--epochs", "5", "--folds", "3", "--lr", "1e-3", "--hidden", "32")
    assert lstm.exit_code == 0, lstm.stderr
    assert json.loads((tmp_path / "lstm" / "config.json").read_text())["params"]["hidden"] == 32
    fusion = run_cli("train", "fusion", imported_copy, "--labels", corpus / "labels.csv", "-f", "emobase", "--folds", "3",
                     "--out", tmp_path / "fusion", "--epochs", "50", "--class-weights", "balanced")
    assert fusion.exit_code == 0, fusion.stderr
    metrics = json.loads((tmp_path / "fusion" / "metrics.json").read_text())
    assert metrics["n_clips"] == 24 and metrics["models"]["emobase"]["aggregate"]["accuracy"]["mean"] > 1 / 6


def test_unmatched_labels_are_reported_and_clip_level_targets_of_any_name(heads_corpus, tmp_path):
    labels = pd.read_csv(heads_corpus / "corpus" / "labels.csv")
    rng = np.random.default_rng(0)
    clip_level = pd.DataFrame({"clip_id": [*labels["clip_id"], "ghost_1", "ghost_2"],
                               "tempo_score": rng.normal(size=len(labels) + 2)})
    clip_level.to_csv(tmp_path / "clip_level.csv", index=False)
    result = run_cli("train", "lasso", heads_corpus / "s.zarr", "--labels", tmp_path / "clip_level.csv", "-f", "emobase",
                     "--target", "tempo_score", "--out", tmp_path / "run", "--folds", "3")
    assert result.exit_code == 0, result.stderr
    assert "labels: 26 clips, 24 with emobase features; left out 2: ghost_1, ghost_2" in result.stderr
    assert "scored per fold (one value per clip)" in result.stderr and "inter-rater" not in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["grain"] == "per fold (one value per clip)" and np.isfinite(metrics["models"]["lasso"]["aggregate"]["ccc"]["mean"])


def test_verify_reports_failures_and_empty_feature_sets(tmp_path):
    from mvfx.stores import open_writer

    store = tmp_path / "s.zarr"
    with open_writer(store) as writer:
        writer.register_extractor({"extractor": "nothing", "version": "1", "dim": 2, "config": {}, "weights": "none",
                                   "feature_names": ["a", "b"]})
        writer.add_failure("clip_a", "nothing", "import", "MvfxError", "clip_a.csv: no rows")
    result = run_cli("store", "verify", store)
    assert result.exit_code == 1
    assert "nothing: no clip has these features" in result.stdout and "1 failures recorded" in result.stdout


def test_extractors_json_lists_feature_names():
    listing = {e["name"]: e for e in json.loads(run_cli("extractors", "--json").stdout)}
    assert listing["emobase"]["feature_names"] == EMOBASE_NAMES and len(listing["yolov5"]["feature_names"]) == 160
