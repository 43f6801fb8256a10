"""Every bad input recorded, none fatal: a corpus of real and broken files made at test time, odd names,
damaged packets, a full and a read-only file system."""
from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import remux_audio, run_cli, tone

from mvfx.media.encode import write_mp4
from mvfx.media.names import raw_bytes
from mvfx.stores import open_store
from mvfx.stores.exchange import export_hdf5

EXTRACTORS = "colour,emobase,logmel_phase,shots,faces"
LATIN1_NAME = b"chanson d'\xe9t\xe9.mp4"  # Latin-1 bytes from an old archive: not valid UTF-8


def _frames(n: int, h: int, w: int):
    return (np.full((h, w, 3), (40 + 5 * i) % 255, np.uint8) for i in range(n))


def _flip_bytes(data: bytes, count: int, seed: int = 0) -> bytes:
    damaged = bytearray(data)
    for pos in np.random.default_rng(seed).integers(len(data) // 3, 2 * len(data) // 3, count):
        damaged[pos] ^= 0xFF
    return bytes(damaged)


def _variable_frame_rate(path: Path) -> None:
    """H.264 whose frames are 20 to 120 ms apart (as phone recordings are)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        t = 0
        for i, gap in enumerate(np.random.default_rng(1).integers(20, 120, 40)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 6 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
            t += int(gap)
        container.mux(stream.encode())


def _mpeg4_in_avi(path: Path) -> None:
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for rgb in _frames(48, 64, 96):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory, demo_corpus) -> Path:
    """Two good clips and 22 kinds of trouble, all made here (nothing committed to the repository)."""
    root = tmp_path_factory.mktemp("hostile")
    good = (demo_corpus / "clip_000.mp4").read_bytes()
    (root / "good_a.mp4").write_bytes(good)
    (root / "good_b.mp4").write_bytes((demo_corpus / "clip_001.mp4").read_bytes())
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n")
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (root / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (root / "zeroed_header.mp4").write_bytes(b"\0" * 1024 + good[1024:])
    (root / "flipped.mp4").write_bytes(_flip_bytes(good, 300))
    write_mp4(root / "audio_only.mp4", None, 24, tone(2.0))
    write_mp4(root / "video_only.mp4", _frames(48, 48, 64), 24)
    write_mp4(root / "tenth_of_a_second.mp4", _frames(3, 48, 64), 30, tone(0.1))
    write_mp4(root / "mono_8k.mp4", _frames(24, 48, 64), 24, tone(1.0, 8000)[:1], 8000)
    write_mp4(root / "surround_48k.mp4", _frames(24, 48, 64), 24, np.concatenate([tone(1.0, 48000)] * 3), 48000)
    _variable_frame_rate(root / "variable_rate.mp4")
    write_mp4(root / "tiny_34x18.mp4", _frames(24, 18, 34), 24)
    write_mp4(root / "eight_k.mp4", _frames(2, 4320, 7680), 2)
    write_mp4(root / "portrait.mp4", _frames(24, 160, 90), 24, tone(1.0))
    _mpeg4_in_avi(root / "mpeg4.avi")
    (root / "spaces and accents é ü.mp4").write_bytes(good)  # also a duplicate of good_a
    (Path(os.fsdecode(bytes(root)) + "/" + os.fsdecode(LATIN1_NAME))).write_bytes((demo_corpus / "clip_002.mp4").read_bytes())
    (root / "line\nbreak.mp4").write_bytes((demo_corpus / "clip_003.mp4").read_bytes())  # a newline in a real file name
    (root / "folder.mp4").mkdir()
    os.symlink("loop.mp4", root / "loop.mp4")
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    os.symlink(root / "good_b.mp4", root / "link_to_good.mp4")
    return root


ENTRIES = {  # file stem -> what must become of it
    "good_a": "stored", "good_b": "stored", "empty": "failed", "text": "failed", "random": "failed",
    "truncated": "either", "zeroed_header": "either", "flipped": "either", "audio_only": "partial",
    "video_only": "partial", "tenth_of_a_second": "either", "mono_8k": "stored", "surround_48k": "stored",
    "variable_rate": "partial", "tiny_34x18": "partial", "eight_k": "partial", "portrait": "stored", "mpeg4": "partial",
    "spaces and accents é ü": "stored", "chanson d'%E9t%E9": "stored", "folder": "discovery", "loop": "discovery",
    "dangling": "discovery", "link_to_good": "stored", "line%0Abreak": "stored",
}


@pytest.fixture(scope="module")
def hostile_run(hostile_corpus, tmp_path_factory):
    store = tmp_path_factory.mktemp("hostile_store") / "s.zarr"
    result = run_cli("extract", hostile_corpus, "--store", store, "-e", EXTRACTORS, "-j", "1")
    return store, result


@pytest.mark.slow
def test_no_bad_input_stops_the_corpus_and_every_input_is_accounted_for(hostile_run):
    store, result = hostile_run
    assert result.exit_code == 1, result.stderr  # some clips failed; nothing raised (the runner re-raises exceptions)
    s = open_store(store)
    failures = s.failures()
    stored = {c: set() for c in s.clip_ids()}
    for name in EXTRACTORS.split(","):
        for clip_id in s.clip_ids(name):
            stored[clip_id].add(name)
    failed = set(failures["clip_id"])
    assert set(stored) | failed == set(ENTRIES), "every input is either stored or has a failures row"
    for clip_id, fate in ENTRIES.items():
        if fate == "stored":
            assert stored.get(clip_id) == set(EXTRACTORS.split(",")), clip_id
        elif fate == "partial":
            assert stored.get(clip_id) and clip_id in failed, clip_id
        elif fate == "failed":
            assert not stored.get(clip_id) and clip_id in failed, clip_id
        elif fate == "discovery":
            assert (failures[failures["clip_id"] == clip_id]["stage"] == "discover").all() and clip_id in failed, clip_id
    for message in failures["message"]:
        assert message and "\n" not in message and len(message) <= 500
    assert "Traceback" not in result.output
    assert s.verify() == []


def test_discovery_problems_and_duplicates_are_reported(hostile_run):
    store, result = hostile_run
    failures = open_store(store).failures().set_index("clip_id")
    assert failures.loc["loop", "message"].endswith("symlink loop")
    assert "dangling symlink (->" in failures.loc["dangling", "message"]
    assert failures.loc["folder", "message"].endswith("a folder named like a media file")
    assert "duplicate link_to_good has the same content as good_b" in result.stderr
    assert "duplicate spaces and accents é ü has the same content as good_a" in result.stderr


def test_failure_lines_keep_their_extractor_and_stage(hostile_run):
    """rich read "[colour/input]" as markup and dropped it: three lines said "failed audio_only : ... no video stream"."""
    _, result = hostile_run
    assert "failed audio_only [colour/input]: " in result.stderr and "failed audio_only : " not in result.stderr


def test_a_newline_in_a_file_name_is_escaped_in_its_id(hostile_run):
    store, _ = hostile_run
    assert "line%0Abreak" in open_store(store).clip_ids("colour")
    assert raw_bytes("line%0Abreak.mp4") == b"line\nbreak.mp4"


@pytest.mark.parametrize("where", ["a_file", "/proc/x.zarr"])
def test_a_store_path_that_cannot_be_a_store_is_one_line(demo_corpus, tmp_path, where):
    store = tmp_path / "a_file.zarr" if where == "a_file" else Path(where)
    if where == "a_file":
        store.write_text("not a store")
    result = run_cli("extract", demo_corpus, "--store", store, "-e", "colour", "-j", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {store}: " + ("is a file, not a store folder; give a new or existing store path" if where == "a_file"
                               else "cannot create a store here (No such file or directory)")]


@pytest.mark.parametrize(("option", "says"), [("nosuch.x=1", "no extractor is called 'nosuch'"),
                                              ("emobase.window_s=1", "emobase is not among the extractors of this run (colour)")])
def test_an_option_for_an_extractor_that_does_not_run_is_refused(demo_corpus, tmp_path, option, says):
    result = run_cli("extract", demo_corpus, "--store", tmp_path / "s.zarr", "-e", "colour", "-o", option)
    assert result.exit_code == 2 and says in result.stderr and not (tmp_path / "s.zarr").exists()


def test_an_empty_option_map_for_an_extractor_that_does_not_run_asks_for_nothing():
    from mvfx.media.errors import MvfxError
    from mvfx.pipeline.plan import _check_options_used

    _check_options_used({"faces": {}, "colour": {}}, ["colour"])  # it stopped run_extract with StopIteration
    with pytest.raises(MvfxError, match="faces is not among"):
        _check_options_used({"faces": {"fps": "1"}}, ["colour"])
    with pytest.raises(MvfxError, match="no extractor is called 'facez'"):
        _check_options_used({"facez": {}}, ["colour"])


def test_a_name_that_is_not_utf8_gets_a_faithful_reversible_id(hostile_run, hostile_corpus, tmp_path):
    store, _ = hostile_run
    s = open_store(store)
    clip_id = "chanson d'%E9t%E9"
    assert clip_id in s.clip_ids("emobase")
    assert raw_bytes(clip_id + ".mp4") == LATIN1_NAME  # the original bytes come back from the id
    path = s.clips().set_index("clip_id").loc[clip_id, "path"]
    assert path.endswith(clip_id + ".mp4")
    export_hdf5(s, tmp_path / "out.h5")  # strings reach HDF5 and read back
    assert clip_id in open_store(tmp_path / "out.h5").clip_ids("emobase")


def test_damaged_packets_are_skipped_counted_and_located(hostile_run):
    store, result = hostile_run
    s = open_store(store)
    clips = s.clips().set_index("clip_id")
    if "flipped" not in s.clip_ids("emobase"):
        pytest.fail(f"the flipped file lost its audio: {s.failures().set_index('clip_id').loc['flipped', 'message']}")
    assert clips.loc["flipped", "damaged_packets"] > 0 and clips.loc["flipped", "damaged_spans"]
    assert clips.loc["good_a", "damaged_packets"] == 0
    values, _ = s.read("emobase", "flipped")
    reference, _ = s.read("emobase", "good_a")
    assert len(values) == len(reference)  # silence keeps the damaged clip's time line: as many windows as the original
    assert "damaged flipped" in result.stderr and s.summary()["damaged_clips"] >= 1
    info = run_cli("store", "info", store)
    assert "damaged flipped:" in info.stdout


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({proc.stderr.strip()}): the full-disk case needs one")


def test_full_then_read_only_file_system_stops_cleanly_and_resumes(demo_corpus, demo_store, tmp_path):
    mount = tmp_path / "small"
    _mount_tmpfs(mount, "700k")
    try:
        store = mount / "s.zarr"
        full = run_cli("extract", demo_corpus, "--store", store, "-e", "colour,emobase,logmel_phase", "-j", "1")
        assert full.exit_code == 2, full.stderr
        lines = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "no space left on device" in lines[0] and "rerun" in lines[0]
        assert "clips not done)" in lines[0]
        partial = open_store(store)
        assert partial.verify() == []  # consistent: whatever was committed reads back and checks out
        committed = len(partial.clip_ids("logmel_phase")) if "logmel_phase" in partial.extractors() else 0
        assert committed < 6
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        resumed = run_cli("extract", demo_corpus, "--store", store, "-e", "colour,emobase,logmel_phase", "-j", "1")
        assert resumed.exit_code == 0, resumed.stderr
        done, reference = open_store(store), open_store(demo_store)
        assert done.verify() == []
        for name in ("colour", "emobase", "logmel_phase"):
            assert done.clip_ids(name) == reference.clip_ids(name)
            for clip_id in reference.clip_ids(name):
                np.testing.assert_array_equal(done.read(name, clip_id)[0], reference.read(name, clip_id)[0])
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        read_only = run_cli("extract", demo_corpus, "--store", store, "-e", "colour,shots", "-j", "1")
        assert read_only.exit_code == 2 and "read-only file system" in read_only.stderr.lower()
        assert read_only.stderr.count("error:") == 1 and open_store(store).verify() == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(mount, ignore_errors=True)


def test_a_damaged_mpeg_ts_whose_demuxer_fails_mid_file_is_a_damaged_clip(demo_corpus, tmp_path):
    """Flipped bytes in an MPEG-TS made PyAV's demuxer raise IndexError (a packet of a stream it had not listed),
    which stopped the whole corpus. It is the container's damage from there on, like any demuxing error."""
    import av
    import numpy as np

    remuxed = tmp_path / "clip.ts"
    with av.open(str(demo_corpus / "clip_000.mp4")) as source, av.open(str(remuxed), "w", format="mpegts") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        for packet in source.demux(*[source.streams[i] for i in streams]):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = bytearray(remuxed.read_bytes())
    for pos in np.random.default_rng(1).integers(len(data) // 3, 2 * len(data) // 3, 500):
        data[pos] ^= 0xFF
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "flipped.ts").write_bytes(bytes(data))
    result = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "colour,emobase", "-j", "1")
    assert "Traceback" not in result.output and "IndexError" not in result.output
    record = open_store(tmp_path / "s.zarr").clips().set_index("clip_id").loc["flipped"]
    assert record["damaged_packets"] > 0 and record["damaged_spans"]


def test_lost_audio_fails_the_audio_extractors_only(demo_corpus, tmp_path):
    """A real MP4 whose audio packets are all garbage failed as a whole clip; the intact video is now stored."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    remux_audio(demo_corpus / "clip_000.mp4", corpus / "no_audio_left.mp4", garble=True)
    result = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "colour,shots,emobase", "-j", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    s = open_store(tmp_path / "s.zarr")
    assert s.clip_ids("colour") == ["no_audio_left"] and s.clip_ids("shots") == ["no_audio_left"] and s.clip_ids("emobase") == []
    failure = s.failures().set_index("extractor").loc["emobase"]
    assert failure["stage"] == "decode" and "audio stream holds no decodable sample" in failure["message"]
    record = s.clips().set_index("clip_id").loc["no_audio_left"]
    assert record["status"] == "partial" and record["missing_spans"] == "audio 0.00-4.00"


def test_audio_that_stops_early_is_recorded_where_and_how_long(demo_corpus, tmp_path):
    """A clip whose audio died at 1.5 s of 4 s was stored as "ok" with a quarter of its emobase rows, saying nothing."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    remux_audio(demo_corpus / "clip_001.mp4", corpus / "audio_dies.mp4", keep_until_s=1.5)
    result = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "colour,emobase", "-j", "1")
    assert result.exit_code == 0, result.stderr
    record = open_store(tmp_path / "s.zarr").clips().set_index("clip_id").loc["audio_dies"]
    kind, span = record["missing_spans"].split(" ")
    start, end = (float(x) for x in span.split("-"))
    assert kind == "audio" and start == pytest.approx(1.5, abs=0.1) and end == pytest.approx(4.0, abs=0.05)
    assert "stream ends early audio_dies: audio 1." in result.stderr
    assert "stream ends early" in run_cli("store", "info", tmp_path / "s.zarr").stdout
