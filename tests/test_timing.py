"""Where a run's time goes (pipeline.timing): the stage clock, and its line in the run summary."""
from __future__ import annotations

from collections import Counter

import pytest
from helpers import remux_audio, run_cli

import mvfx.pipeline.timing as timing_module
from mvfx.pipeline.timing import DECODING, WAITING, describe, forward_stage, timed_items, timing


class Clock:
    """``time.perf_counter`` as the timing module sees it, moved by hand: exact seconds, no sleeps to flake."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timing_module.time, "perf_counter", clock)
    return clock


def test_timing_adds_the_block_s_seconds_even_when_it_raises(clock):
    times: Counter = Counter()
    with timing(times, "a"):
        clock.now += 2.0
    with pytest.raises(ValueError), timing(times, "a"):
        clock.now += 3.0
        raise ValueError("boom")
    assert times == Counter({"a": 5.0})


def test_timed_items_counts_producing_not_consuming_and_closes_its_source(clock):
    closed = []

    def source():
        try:
            for k in range(5):
                clock.now += 1.0  # decoding one piece
                yield k
        finally:
            closed.append(True)

    times: Counter = Counter()
    seen = []
    for item in timed_items(source(), times, DECODING):
        seen.append(item)
        clock.now += 10.0  # the consumer's time is not the producer's
    assert seen == [0, 1, 2, 3, 4] and closed == [True] and times == Counter({DECODING: 5.0})
    early = timed_items(source(), times, DECODING)
    assert next(early) == 0
    early.close()  # a consumer that stops early closes the decoder (and its file) too
    assert closed == [True, True]


def test_describe_puts_the_largest_stage_first_and_decoding_apart():
    line = describe(Counter({"colour": 0.01, "slowfast_r50": 30.0, WAITING: 9.99, DECODING: 12.5}))
    assert line == ("slowfast_r50 30.0 s (75 %), waiting for frames 10.0 s (25 %), colour 0.01 s (0 %); "
                    "decoding 12.5 s beside them, in its own thread")
    assert describe(Counter()) == "nothing measurable"
    with_forward = describe(Counter({"i3d": 4.0, forward_stage("i3d"): 3.0, "colour": 1.0}))
    assert with_forward == "i3d 4.0 s (80 %, forward passes 3.0 s), colour 1.0 s (20 %)"  # inside i3d's share, not added


def test_an_extractor_s_forward_passes_are_counted_inside_its_share(demo_corpus):
    """ResNet-50 on a real clip: its forward passes are most, not all, of its stage (cropping, the rows back)."""
    from helpers import random_extractor

    from mvfx.media.probe import probe
    from mvfx.pipeline.streaming import stream_pass

    outcome = stream_pass(probe(str(demo_corpus / "clip_000.mp4")), [random_extractor("resnet50", fps="1")], {})
    assert 0 < outcome.seconds[forward_stage("resnet50")] <= outcome.seconds["resnet50"]


def test_the_run_summary_says_where_the_time_went(demo_corpus, tmp_path):
    result = run_cli("extract", demo_corpus / "clip_000.mp4", "--store", tmp_path / "s.zarr", "-e", "colour,emobase", "-j", "1")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the summary goes to stderr; rich wraps long lines at the terminal's width
    line = text[text.index("time per stage, summed over clips: "):]
    for stage in ("colour", "emobase", "decoding"):
        assert f"{stage} " in line


def test_a_clip_whose_decoding_fails_still_counts_its_time(demo_corpus, tmp_path):
    """All its audio packets are garbage and only emobase reads it: the clip fails after a whole demux pass, whose
    seconds still reach the run's breakdown."""
    from helpers import random_extractor

    from mvfx.media.errors import ClipError
    from mvfx.media.probe import probe
    from mvfx.pipeline.streaming import stream_pass

    remux_audio(demo_corpus / "clip_000.mp4", tmp_path / "garbled.mp4", garble=True)
    times: Counter = Counter()
    with pytest.raises(ClipError, match="no decodable sample"):
        stream_pass(probe(str(tmp_path / "garbled.mp4")), [random_extractor("emobase")], {}, times=times)
    assert times[DECODING] > 0 and WAITING in times
