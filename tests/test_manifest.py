"""Manifests (CSV and Parquet) with ids and durations, their one-line errors, and planning a corpus without probing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mvfx.media.errors import MvfxError
from mvfx.pipeline import corpus
from mvfx.pipeline.corpus import ClipSource, discover
from mvfx.pipeline.plan import RunSettings, plan


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def _parquet(file: Path, **columns) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), file)
    return file


def test_csv_manifest_gives_ids_durations_and_paths_relative_to_itself(tmp_path):
    _touch(tmp_path, "media/one.mp4", "media/two.mp4")
    absolute = tmp_path / "elsewhere" / "three.mp4"
    _touch(absolute.parent, absolute.name)
    (tmp_path / "m.csv").write_text(
        "\ufeffclip_id,label,path,duration_s\n"  # a byte-order mark, as spreadsheets write; a column mvfx does not use
        f"first,sad,media/one.mp4,12.5\n,calm,media/two.mp4,\n\nthird,calm,{absolute},240\n", encoding="utf-8")
    found = discover(str(tmp_path / "m.csv"))
    assert found.clips == [
        ClipSource("first", str(tmp_path / "media" / "one.mp4"), 12.5),
        ClipSource("third", str(absolute), 240.0),
        ClipSource("two", str(tmp_path / "media" / "two.mp4"), None),
    ]
    assert found.problems == []


def test_parquet_manifest_gives_ids_and_durations(tmp_path):
    manifest = _parquet(tmp_path / "m.parquet", path=["media/a.mp4", "/data/b.mkv", "media/c.webm"],
                        clip_id=["x/a", None, "x/c"], duration_s=[30.0, None, 61.25])
    clips = discover(str(manifest)).clips
    assert [(c.clip_id, c.path, c.duration_s) for c in clips] == [
        ("b", "/data/b.mkv", None), ("x/a", str(tmp_path / "media" / "a.mp4"), 30.0), ("x/c", str(tmp_path / "media" / "c.webm"), 61.25),
    ]


def test_parquet_manifest_needs_only_paths_and_takes_whole_seconds(tmp_path):
    only_paths = _parquet(tmp_path / "p.parquet", path=["a.mp4", "b.mp4"])
    assert [(c.clip_id, c.duration_s) for c in discover(str(only_paths)).clips] == [("a", None), ("b", None)]
    whole = _parquet(tmp_path / "w.parquet", path=["a.mp4"], duration_s=[90])
    assert discover(str(whole)).clips[0].duration_s == 90.0


def test_repeated_ids_name_both_lines_or_rows(tmp_path):
    (tmp_path / "m.csv").write_text("clip_id,path\na,x.mp4\nb,y.mp4\na,z.mp4\n")
    with pytest.raises(MvfxError, match=r"m\.csv:4: clip id 'a' is not unique \(also at .*m\.csv:2\)"):
        discover(str(tmp_path / "m.csv"))
    (tmp_path / "s.csv").write_text("path\nx/clip.mp4\ny/clip.mp4\n")  # ids from stems: the same stem twice
    with pytest.raises(MvfxError, match=r"s\.csv:3: clip id 'clip' is not unique"):
        discover(str(tmp_path / "s.csv"))
    parquet = _parquet(tmp_path / "m.parquet", path=["x.mp4", "y.mp4"], clip_id=["a", "a"])
    with pytest.raises(MvfxError, match=r"m\.parquet: row 2: clip id 'a' is not unique \(also at .*m\.parquet: row 1\)"):
        discover(str(parquet))


def test_folder_or_glob_ids_that_collide_are_refused(tmp_path):
    _touch(tmp_path, "a.mp4", "a.webm", "b.mp4")
    with pytest.raises(MvfxError, match=r"clip ids are not unique \(a\); use a manifest"):
        discover(str(tmp_path))


@pytest.mark.parametrize(("rows", "line", "reason"), [
    ("a,x.mp4,10\nb,,10\n", 3, "empty path"),
    ("a,x.mp4,ten\n", 2, "duration_s 'ten' is not a number of seconds"),
    ("a,x.mp4,-4\n", 2, "duration_s '-4' must be a positive number of seconds"),
    ("a,x.mp4,nan\n", 2, "must be a positive number"),
    ("a,x.mp4,1\nb\n", 3, "empty path"),  # a short row
    ('a,x.mp4,1\nb,"y\nz.mp4",oops\n', 4, "not a number"),  # a quoted field over two lines: the line it ends on
])
def test_a_bad_csv_row_is_one_line_naming_file_and_line(tmp_path, rows, line, reason):
    (tmp_path / "m.csv").write_text("clip_id,path,duration_s\n" + rows)
    with pytest.raises(MvfxError) as raised:
        discover(str(tmp_path / "m.csv"))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'm.csv'}:{line}: ") and reason in message and "\n" not in message


def test_bad_parquet_rows_and_files_are_one_line_errors(tmp_path):
    empty = _parquet(tmp_path / "e.parquet", path=["a.mp4", None])
    with pytest.raises(MvfxError, match=r"e\.parquet: row 2: empty path"):
        discover(str(empty))
    numbers = _parquet(tmp_path / "n.parquet", path=[1, 2])
    with pytest.raises(MvfxError, match=r"n\.parquet: column 'path' must hold text, not int64"):
        discover(str(numbers))
    no_path = _parquet(tmp_path / "c.parquet", name=["a.mp4"])
    with pytest.raises(MvfxError, match=r"c\.parquet: a manifest needs a 'path' column .*found name"):
        discover(str(no_path))
    (tmp_path / "fake.parquet").write_text("path\na.mp4\n")
    with pytest.raises(MvfxError, match=r"fake\.parquet: not a readable Parquet file") as raised:
        discover(str(tmp_path / "fake.parquet"))
    assert "\n" not in str(raised.value)


def test_csv_without_a_path_column_names_the_columns_it_has(tmp_path):
    (tmp_path / "m.csv").write_text("clip,file\na,b.mp4\n")
    with pytest.raises(MvfxError, match=r"needs a 'path' column .*found clip, file"):
        discover(str(tmp_path / "m.csv"))


def test_non_utf8_bytes_in_a_manifest_path_reach_the_file(tmp_path):
    name = b"chanson d'\xe9t\xe9.mp4"
    (Path(os.fsdecode(bytes(tmp_path))) / os.fsdecode(name)).write_bytes(b"x")
    (tmp_path / "m.csv").write_bytes(b"path\n" + name + b"\n")
    clip = discover(str(tmp_path / "m.csv")).clips[0]
    assert clip.clip_id == "chanson d'%E9t%E9" and os.path.isfile(clip.path)


def test_discovery_reports_its_count_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "FOUND_EVERY", 2)
    _touch(tmp_path / "folder", *(f"s{i % 2}/c{i}.mp4" for i in range(5)))
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"c{i}.mp4\n" for i in range(5)))
    for where in (tmp_path / "folder", tmp_path / "m.csv", tmp_path / "folder" / "*" / "*.mp4"):
        counts: list[int] = []
        assert len(discover(str(where), on_found=counts.append).clips) == 5
        assert counts == [2, 4, 5], where


def test_a_glob_keeps_a_symlink_as_its_own_clip(tmp_path):
    _touch(tmp_path, "v/a.mp4")
    os.symlink(tmp_path / "v" / "a.mp4", tmp_path / "v" / "b.mp4")
    clips = discover(str(tmp_path / "v" / "*.mp4")).clips
    assert [(c.clip_id, c.path) for c in clips] == [("a", str(tmp_path / "v" / "a.mp4")), ("b", str(tmp_path / "v" / "b.mp4"))]


class _Store:
    """What planning reads of a store: the clips it has records of (with their sizes), and none done."""

    def __init__(self, records: dict[str, dict]) -> None:
        self.records = records

    def done(self, extractor: str) -> set:
        return set()

    def clip_records(self) -> dict[str, dict]:
        return self.records


def test_planning_needs_no_file_it_has_no_record_of_and_reports_progress(tmp_path):
    _touch(tmp_path, "seen.mp4", "changed.mp4")
    manifest = tmp_path / "manifest.csv"  # a manifest of paths not all mounted yet: no file is opened to plan it
    manifest.write_text("clip_id,path,duration_s\nnever-seen,not-there-yet.mp4,10\nseen,seen.mp4,\nchanged,changed.mp4,\n"
                        "gone,gone.mp4,\n")
    store = _Store({"seen": {"size_bytes": 1}, "changed": {"size_bytes": 7}, "gone": {"size_bytes": 3}})
    stages = []
    planned = plan(RunSettings(str(manifest), "unused.zarr", ("colour",)), store, lambda *report: stages.append(report))
    assert sorted(c.clip_id for c, _ in planned.todo) == ["gone", "never-seen", "seen"]  # a gone file is its task's failure
    assert [clip for clip, _ in planned.changed] == ["changed"] and "7 -> 1 bytes" in planned.changed[0][1]
    assert stages[-1] == ("plan", 4, 4)
