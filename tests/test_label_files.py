"""Label and pair files: one row per clip (repeats dropped and said so, conflicts refused in one line), and no
fold ever has a clip on both sides, whatever the file holds."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from helpers import run_cli

from mvfx.heads.data.labels import RepeatedLabelsWarning, read_class_labels, read_labels
from mvfx.heads.data.pairs import build_pairs, load_pairs
from mvfx.media.errors import MvfxError
from mvfx.stores import open_store


def _labels(heads_corpus) -> pd.DataFrame:
    return pd.read_csv(heads_corpus / "corpus" / "labels.csv", dtype=str)


def test_conflicting_labels_are_refused_in_one_line_naming_the_clip_and_both_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("clip_id,label,split\nclip_000,sad,train\nclip_001,fear,train\nclip_000,fear,train\n")
    result = run_cli("pairs", "build", "--labels", path, "--out", tmp_path / "pairs.csv")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: clip clip_000 has conflicting labels: line 2 (clip_000,sad,train) and line 4 (clip_000,fear,train); keep one"]
    path.write_text("clip_id,label,split\nclip_000,sad,train\nclip_000,sad,test\n")  # one clip in two splits: both sides
    with pytest.raises(MvfxError, match=r"clip clip_000 has conflicting labels: line 2 \(clip_000,sad,train\) and line 3"):
        read_class_labels(path)
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("clip_id,arousal\nc1,0.5\nc2,0.1\nc1,-0.2\n")  # clip-level values: averaged silently before
    with pytest.raises(MvfxError, match=r"clip c1 has conflicting labels: line 2 \(c1,0.5\) and line 4 \(c1,-0.2\)"):
        read_labels(ratings, "arousal")


def test_identical_repeats_are_dropped_with_a_one_line_note(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("clip_id,label\na,sad\nb,fear\na,sad\nb,fear\nc,sad\n")
    with pytest.warns(RepeatedLabelsWarning) as caught:
        table = read_class_labels(path)
    assert table["clip_id"].tolist() == ["a", "b", "c"]
    assert [str(w.message) for w in caught] == [f"{path}: dropped 2 row(s) repeating an earlier row of their clip: line 4 (a), line 5 (b)"]
    series = tmp_path / "series.csv"
    series.write_text("clip_id,annotator,time_s,arousal\nc1,a1,0.0,0.1\nc1,a1,0.5,0.2\nc1,a1,0.0,0.1\nc1,a2,0.0,0.3\nc1,a2,0.5,0.4\n")
    with pytest.warns(RepeatedLabelsWarning, match="line 4 \\(c1\\)"):
        gold = read_labels(series, "arousal")["c1"]
    assert gold.ratings.tolist() == [[0.1, 0.2], [0.3, 0.4]]
    table.to_csv(tmp_path / "clean.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_class_labels(tmp_path / "clean.csv")  # a clean file: no note


def test_repeated_label_rows_never_put_a_clip_on_both_sides_of_a_fold(heads_corpus, tmp_path):
    """12 clips plus 3 repeated rows in 3 folds: every fold had a clip in both its training and its test rows."""
    labels = _labels(heads_corpus)
    twelve = labels[labels["label"].isin(["sad", "fear", "exciting"])].drop(columns="split")
    assert len(twelve) == 12
    pd.concat([twelve, twelve.iloc[[0, 5, 9]]]).to_csv(tmp_path / "labels.csv", index=False)
    result = run_cli("train", "fusion", heads_corpus / "s.zarr", "--labels", tmp_path / "labels.csv", "-f", "colour",
                     "--folds", 3, "--member-model", "logistic", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tested = [clip for fold in metrics["folds"] for clip in fold["test_clips"]]
    assert sorted(tested) == sorted(twelve["clip_id"]) and metrics["n_clips"] == 12  # each clip tested once: never on both sides
    assert len(pd.read_csv(tmp_path / "run" / "predictions.csv")) == 12
    assert "dropped 3 row(s) repeating an earlier row of their clip" in result.stderr


def test_correspondence_groups_come_from_the_clips_the_pairs_share(heads_corpus, tmp_path):
    """A hand-made pairs file that reuses clips across its `group` column's groups: the groups are the clips' own."""
    pairs = build_pairs(_labels(heads_corpus).drop(columns="split"), seed=0)
    matched = pairs[pairs["match"] == 1]
    a, b = matched["video_clip"].iloc[0], matched["video_clip"].iloc[1]
    extra = pd.DataFrame([{"video_clip": a, "music_clip": b, "video_label": "x", "music_label": "y", "match": 0, "split": "all", "group": 900},
                          {"video_clip": b, "music_clip": matched["video_clip"].iloc[2], "video_label": "y", "music_label": "z", "match": 0,
                           "split": "all", "group": 901}])
    pd.concat([pairs, extra]).to_csv(tmp_path / "pairs.csv", index=False)
    data = load_pairs(open_store(heads_corpus / "s.zarr"), tmp_path / "pairs.csv", "colour", "emobase")
    group_of: dict[str, set] = {}
    for row in data.pairs.itertuples():
        for clip in (row.video_clip, row.music_clip):
            group_of.setdefault(clip, set()).add(row.group)
    assert all(len(groups) == 1 for groups in group_of.values())  # a clip's pairs all share one group
    assert len({next(iter(group_of[c])) for c in (a, b, matched["video_clip"].iloc[2])}) == 1
    result = run_cli("train", "correspond", heads_corpus / "s.zarr", "--pairs", tmp_path / "pairs.csv", "--video-features", "colour",
                     "--music-features", "emobase", "--epochs", 2, "--folds", 3, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    tested = [clip for fold in json.loads((tmp_path / "run" / "metrics.json").read_text())["folds"] for clip in fold["test_clips"]]
    assert len(tested) == len(set(tested))  # no clip in the test pairs of two folds, so none on both sides of one
