from pathlib import Path

import pytest

from mvfx.media.errors import MvfxError
from mvfx.pipeline.corpus import discover


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_folder_is_recursive_with_relative_ids(tmp_path):
    _touch(tmp_path, "a.mp4", "sub/b.webm", "sub/deeper/c.ogg", "notes.txt", ".hidden.mp4")
    clips = discover(str(tmp_path)).clips
    assert [c.clip_id for c in clips] == ["a", "sub/b", "sub/deeper/c"]
    assert all(Path(c.path).is_absolute() for c in clips)


def test_ids_are_stable_wherever_the_corpus_is_mounted(tmp_path):
    for root in (tmp_path / "one", tmp_path / "two"):
        _touch(root, "x/clip.mp4")
    assert discover(str(tmp_path / "one")).clips[0].clip_id == discover(str(tmp_path / "two")).clips[0].clip_id == "x/clip"


def test_glob_ids_are_relative_to_the_fixed_prefix(tmp_path):
    _touch(tmp_path, "v/a.mp4", "v/b.mp4", "v/c.webm")
    clips = discover(str(tmp_path / "v" / "*.mp4")).clips
    assert [c.clip_id for c in clips] == ["a", "b"]


def test_manifest_gives_ids_and_resolves_relative_paths(tmp_path):
    _touch(tmp_path, "media/one.mp4", "media/two.mp4")
    (tmp_path / "m.csv").write_text("clip_id,path\nfirst,media/one.mp4\n,media/two.mp4\n")
    clips = discover(str(tmp_path / "m.csv")).clips
    assert [(c.clip_id, Path(c.path).name) for c in clips] == [("first", "one.mp4"), ("two", "two.mp4")]


def test_manifest_without_path_column_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_text("clip,file\na,b.mp4\n")
    with pytest.raises(MvfxError, match="needs a 'path' column"):
        discover(str(tmp_path / "m.csv"))


def test_duplicate_ids_are_refused(tmp_path):
    (tmp_path / "m.csv").write_text("clip_id,path\na,x.mp4\na,y.mp4\n")
    with pytest.raises(MvfxError, match="not unique"):
        discover(str(tmp_path / "m.csv"))


def test_missing_corpus_is_a_one_line_error(tmp_path):
    with pytest.raises(MvfxError, match="no such folder"):
        discover(str(tmp_path / "nope"))


def test_folder_entries_named_like_clips_that_are_not_files_are_problems_not_gaps(tmp_path):
    import os

    _touch(tmp_path, "a.mp4", "x.mp4/inside.mp4", ".hidden_dir/b.mp4")
    os.symlink("loop.mp4", tmp_path / "loop.mp4")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    os.symlink(tmp_path / "a.mp4", tmp_path / "link.mp4")
    os.symlink(tmp_path / "x.mp4", tmp_path / "dirlink")  # a symlinked folder is not followed
    os.mkfifo(tmp_path / "fifo.mp4")
    found = discover(str(tmp_path))
    assert [(c.clip_id, c.path) for c in found.clips] == [
        (".hidden_dir/b", str(tmp_path / ".hidden_dir" / "b.mp4")), ("a", str(tmp_path / "a.mp4")),
        ("link", str(tmp_path / "link.mp4")), ("x.mp4/inside", str(tmp_path / "x.mp4" / "inside.mp4")),
    ]
    reasons = {clip_id: message.split(": ", 1)[1] for clip_id, message in found.problems}
    assert reasons == {"dangling": f"dangling symlink (-> {tmp_path / 'gone.mp4'})", "fifo": "not a regular file",
                       "loop": "symlink loop", "x": "a folder named like a media file"}
