"""Deep visual extractors (random weights, real architectures): shapes, grids, names, preprocessing,
checkpoint conversion, frame sampling, shots and per-shot features, FlowNetS statistics, bf16, provenance."""
import numpy as np
import pytest
import torch
from helpers import random_extractor, random_frames

import mvfx.extractors as extractors
from mvfx.extractors import weights
from mvfx.extractors.flownets import flow_statistics
from mvfx.extractors.frame_cnn import IMAGENET, places365_categories
from mvfx.extractors.image_ops import centre_crop_normalise
from mvfx.extractors.torchvision_compat import import_torchvision, nms_reference
from mvfx.extractors.video_models import I3D_R50_K400, slowfast_indices, uniform_subsample
from mvfx.media.decode import VideoSpec, decode
from mvfx.media.encode import write_mp4
from mvfx.media.probe import probe
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

VISUAL = ["resnet50", "places365", "slowfast_r50", "i3d", "shots", "flownets"]
SMALL_FLOW = {"flownets": {"width": "256", "height": "192"}}
KINETICS_CLASSES = I3D_R50_K400.category_names()


def test_preprocessing_equals_torchvision_transforms():
    tv = import_torchvision()
    from torchvision.transforms import v2

    frames = random_frames(3, 256, 341, 2).images
    ours = centre_crop_normalise(frames, IMAGENET.crop, IMAGENET.mean, IMAGENET.std)
    reference = v2.Compose([v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(list(IMAGENET.mean), list(IMAGENET.std))])
    expected = reference(torch.as_tensor(frames).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    assert tv.transforms.v2 is v2  # the compat import is the torchvision the reference ran on


def test_decoder_resize_is_close_to_torchvision_resize(tmp_path):
    from torchvision.transforms import v2

    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(0, 255, (9, 16, 3)), np.ones((40, 40, 1))).astype(np.uint8)  # 360 x 640
    write_mp4(tmp_path / "v.mp4", [smooth] * 3, 24)
    spec = VideoSpec(fps=1, short_side=256)
    ours = decode(probe(str(tmp_path / "v.mp4")), video_specs={spec}).video[spec].images[0].astype(float)
    original = decode(probe(str(tmp_path / "v.mp4")), video_specs={VideoSpec(fps=1)}).video[VideoSpec(fps=1)].images[0]
    theirs = v2.Resize(256, antialias=True)(torch.as_tensor(original).permute(2, 0, 1)).permute(1, 2, 0).numpy().astype(float)
    assert ours.shape == theirs.shape == (256, 455, 3)
    assert np.abs(ours - theirs).mean() < 3.0  # swscale vs torchvision bilinear on 0..255 pixels


@pytest.mark.parametrize("name, dim, first, last", [("resnet50", 2048, "resnet50_0000", "resnet50_2047"),
                                                     ("places365", 366, "airfield", "p_indoor")])
def test_frame_cnns_shapes_names_and_grid(name, dim, first, last):
    e = random_extractor(name)
    block = e.extract(random_frames(5, 256, 320, 2), None, {})
    assert block.values.shape == (5, dim) and e.feature_names[0] == first and e.feature_names[-1] == last
    assert e.time_grid.hop_s == 0.5 and e.input == VideoSpec(fps=2.0, short_side=256)
    if name == "places365":
        np.testing.assert_allclose(block.values[:, :365].sum(axis=1), 1.0, rtol=1e-5)
        names, indoor = places365_categories()
        assert len(names) == 365 and names[15] == "arena/hockey" and indoor.sum() == 161  # grep -c " 1$"
        np.testing.assert_allclose(block.values[:, 365], block.values[:, :365][:, indoor].sum(axis=1), rtol=1e-5)


def test_places365_checkpoint_keys_are_converted(tmp_path, monkeypatch):
    """A checkpoint laid out like CSAILVision's (DataParallel 'module.' keys under 'state_dict') loads strictly."""
    tv = import_torchvision()
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    torch.manual_seed(7)
    original = tv.models.resnet50(weights=None, num_classes=365).state_dict()
    checkpoint = {"epoch": 90, "arch": "resnet50", "best_prec1": 54.7, "state_dict": {f"module.{k}": v for k, v in original.items()}}
    torch.save(checkpoint, tmp_path / "resnet50_places365.pth.tar")
    weights.import_file("places365_resnet50", tmp_path / "resnet50_places365.pth.tar")
    e = extractors.create("places365")
    e.setup("cpu")
    torch.testing.assert_close(e.model.state_dict()["layer4.2.conv3.weight"], original["layer4.2.conv3.weight"])
    torch.testing.assert_close(e.model.fc.weight, original["fc.weight"])
    assert e.weights_provenance()["weights"].startswith("sha256:")


def test_slowfast_sampling_indices_by_hand():
    fast, slow = slowfast_indices(64, 32, 4)
    assert fast.tolist() == list(range(0, 62, 2)) + [63]  # floor(k * 63/31): 0, 2, ..., 60, 63
    assert slow.tolist() == [0, 8, 16, 26, 34, 44, 52, 63]  # fast[floor(linspace(0, 31, 8))]
    assert uniform_subsample(64, 8).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]  # I3D's 8 frames


@pytest.mark.parametrize("name, dim", [("slowfast_r50", 2304), ("slowfast_r50_logits", 400), ("i3d", 2048)])
def test_video_models_give_one_row_per_window(name, dim):
    e = random_extractor(name)
    block = e.extract(random_frames(130, 256, 300, 30), None, {})  # two full 64-frame windows
    assert block.values.shape == (2, dim)
    np.testing.assert_allclose(block.times, [[0, 64 / 30], [64 / 30, 128 / 30]])
    if name.endswith("logits"):
        np.testing.assert_allclose(block.values.sum(axis=1), 1.0, rtol=1e-5)
        assert e.feature_names[:2] == ["abseiling", "air drumming"] and len(KINETICS_CLASSES) == 400


def _cut_video(path):
    """3 s at 24 fps with hard cuts at 1.0 s and 2.0 s: each shot its own colour, brightness and texture."""
    rng = np.random.default_rng(0)
    shots = [np.clip(rng.normal(mean, 25, (90, 160, 3)), 0, 255).astype(np.uint8)
             for mean in ((220, 60, 40), (20, 90, 30), (90, 110, 240))]
    write_mp4(path, (shots[i // 24] for i in range(72)), 24)


def test_shots_find_known_cuts_and_per_shot_i3d_uses_them(tmp_path):
    _cut_video(tmp_path / "cuts.mp4")
    info = probe(str(tmp_path / "cuts.mp4"))
    shots, i3d = extractors.create("shots"), random_extractor("i3d", per_shot="true")
    decoded = decode(info, video_specs={shots.input, i3d.input})
    block = shots.extract(decoded.video[shots.input], info, {})
    np.testing.assert_allclose(block.times, [[0, 1], [1, 2], [2, 3]], atol=0.05)
    assert block.values[:, 0].tolist() == [0, 1, 2]
    per_shot = i3d.extract(decoded.video[i3d.input], info, {"shots": block})
    assert per_shot.values.shape == (3, 2048)
    np.testing.assert_allclose(per_shot.times, block.times)
    assert i3d.depends_on == ("shots",)


def test_flow_statistics_of_a_known_flow_field():
    right = np.stack([np.full((4, 4), 3.0), np.zeros((4, 4))])  # 3 px to the right everywhere
    stats = flow_statistics(right)
    assert stats[0] == pytest.approx(3.0) and stats[1] == pytest.approx(1.0) and stats[2:].sum() == 0
    down = np.stack([np.zeros((4, 4)), np.full((4, 4), 2.0)])  # +y is 90 degrees
    assert flow_statistics(down)[1 + 2] == pytest.approx(1.0)


def test_flownets_rows_are_consecutive_frame_pairs():
    e = random_extractor("flownets", width="256", height="192")
    assert sum(p.numel() for p in e.model.parameters()) == 38_675_536
    block = e.extract(random_frames(5, 192, 256, 4), None, {})
    assert block.values.shape == (4, 1 + 8 + 1024)
    np.testing.assert_allclose(block.times[:2], [[0, 0.25], [0.25, 0.5]])
    np.testing.assert_allclose(block.values[:, 1:9].sum(axis=1), 1.0, rtol=1e-5)


def test_bf16_features_stay_close_to_fp32():
    frames = random_frames(4, 256, 300, 2, seed=3)
    fp32 = random_extractor("resnet50", precision="fp32").extract(frames, None, {}).values
    bf16 = random_extractor("resnet50", precision="bf16").extract(frames, None, {}).values
    cosine = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cosine.min() > 0.99


def test_python_nms_matches_the_definition():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms_reference(boxes, scores, 0.5).tolist() == [3, 2]  # box 3 suppresses 0 and 1
    assert import_torchvision().ops.nms(boxes, scores, 0.5).tolist() == [3, 2]


@pytest.mark.parametrize("pairs", [1, 5000, 1 << 20])  # one box a block, blocks of a few, as the overlaps allow
def test_python_nms_in_blocks_matches_the_greedy_loop(monkeypatch, pairs):
    from mvfx.extractors import torchvision_compat

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 300, (1500, 2))
    boxes = torch.tensor(np.concatenate([corners, corners + rng.uniform(1, 60, (1500, 2))], 1), dtype=torch.float32)
    scores = torch.tensor(rng.random(1500), dtype=torch.float32)
    box_iou, expected = import_torchvision().ops.box_iou, []
    for i in scores.argsort(descending=True).tolist():  # the definition: kept unless a kept box overlaps it by > 0.5
        if not (box_iou(boxes[i : i + 1], boxes[expected]) > 0.5).any():
            expected.append(i)
    monkeypatch.setattr(torchvision_compat, "NMS_PAIRS", pairs)
    assert nms_reference(boxes, scores, 0.5).tolist() == expected
    assert 100 < len(expected) < 1400  # both kept and suppressed boxes


def test_python_nms_keeps_empty_boxes_as_torchvision_does():
    """Two empty boxes overlap by 0 / 0 = NaN, which is not above the threshold: neither suppresses the other."""
    boxes = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [5, 5, 10, 10]], dtype=torch.float)
    assert nms_reference(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]


@pytest.mark.slow
def test_visual_extractors_end_to_end_with_random_weights(demo_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    store = tmp_path / "visual.zarr"
    summary = run_extract(str(demo_corpus), str(store), VISUAL + ["i3d_logits"], options={**SMALL_FLOW, "i3d_logits": {"per_shot": "true"}},
                          workers=1, random_weights=True)
    assert summary.ok, summary.failures
    s = open_store(store)
    for name in VISUAL + ["i3d_logits"]:
        assert len(s.clip_ids(name)) == 6
        assert s.attrs(name)["weights"] == ("none" if name == "shots" else "random")
    shots = s.read("shots", "clip_000")[1]
    np.testing.assert_allclose(s.read("i3d_logits", "clip_000")[1], shots)
    assert s.read("slowfast_r50", "clip_000")[0].shape == (1, 2304)  # 4 s at 30 fps: one 64-frame window
    assert s.read("resnet50", "clip_000")[0].shape == (8, 2048)


def test_missing_visual_weights_name_the_file(demo_corpus, tmp_path, monkeypatch):
    from mvfx.media.errors import MvfxError

    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    with pytest.raises(MvfxError, match=r"SLOWFAST_8x8_R50\.pyth .*mvfx weights import slowfast_r50_k400 FILE"):
        run_extract(str(demo_corpus), str(tmp_path / "s.zarr"), ["slowfast_r50"], workers=1)


def test_per_shot_reuses_shots_already_in_the_store(demo_corpus, tmp_path):
    store = tmp_path / "shots.zarr"
    run_extract(str(demo_corpus), str(store), ["shots"], workers=1)
    summary = run_extract(str(demo_corpus), str(store), ["i3d"], options={"i3d": {"per_shot": "true"}}, workers=1, random_weights=True)
    assert summary.ok and summary.pairs_skipped == 6 and summary.pairs_done == 6  # shots were not detected again
    s = open_store(store)
    np.testing.assert_allclose(s.read("i3d", "clip_002")[1], s.read("shots", "clip_002")[1])
