"""Faces with real weights: MTCNN and the FER2013 mini-Xception against their original implementations, and
real images that must mean something (the astronaut smiles; a cartoon has no human face)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli, timed
from skimage import data

import mvfx.extractors as extractors
from mvfx.extractors import mtcnn
from mvfx.extractors.checkpoints import load_checkpoint, load_state_dict_strict
from mvfx.extractors.faces import CROP, FER_CLASSES, aligned_crop, build_vgg19_fer, detect_faces, haar_cascade, square_box
from mvfx.extractors.image_ops import grey_crop
from mvfx.extractors.mini_xception import build_mini_xception, preprocess, state_dict_from_keras
from mvfx.extractors.torchvision_compat import import_torchvision
from mvfx.extractors.weight_registry import entry
from mvfx.extractors.weights import require
from mvfx.media.decode import VideoSpec, decode
from mvfx.media.probe import probe

ASTRONAUT = data.astronaut()  # NASA photograph (public domain), one smiling face
BLANK = np.full((512, 512, 3), 128, np.uint8)


def _pair() -> np.ndarray:
    """The astronaut beside the same face at half size."""
    pair = np.full((512, 768, 3), 128, np.uint8)
    pair[:, :512], pair[:256, 512:] = ASTRONAUT, ASTRONAUT[::2, ::2]
    return pair


@pytest.fixture(scope="module")
def nets():
    import_torchvision()
    built = mtcnn.build_networks()
    for net, name in zip(built, ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")):
        load_state_dict_strict(net, load_checkpoint(require(name)[0], name), name)
        net.eval()
    return built


def test_packaged_weights_are_present_with_source_licence_and_hash():
    """On a machine that never ran mvfx (this test's empty MVFX_HOME) the wheels' files are "packaged"; the first
    use copies them into the cache, checked against the registry's sha256, and they are "ok" from then on."""
    names = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet", "fer2013_mini_xception")

    def listing() -> dict:
        return {row["name"]: row for row in json.loads(run_cli("weights", "list", "--json").stdout)}

    fresh = listing()
    for name in names:
        assert fresh[name]["status"] == "packaged" and fresh[name]["licence"].startswith("MIT"), name
    assert fresh["mtcnn_onet"]["extractors"] == ["face_crops", "face_expression", "faces"]
    for name in names:
        assert require(name)[1] == entry(name).sha256
    used = listing()
    for name in names:
        assert used[name]["status"] == "ok" and used[name]["sha256"] == entry(name).sha256, name


@pytest.mark.parametrize("image", ["astronaut", "mirrored", "two faces"])
def test_mtcnn_matches_facenet_pytorch(nets, image):
    from facenet_pytorch import MTCNN

    frame = {"astronaut": ASTRONAUT, "mirrored": ASTRONAUT[:, ::-1].copy(), "two faces": _pair()}[image]
    with torch.no_grad():
        ours = mtcnn.detect(nets, frame[None])[0]
    boxes, probs, points = MTCNN(keep_all=True, device="cpu").detect(frame, landmarks=True)
    boxes, probs, points = (np.asarray(a, np.float64) for a in (boxes, probs, points))
    assert len(ours.boxes) == len(boxes) == (2 if image == "two faces" else 1)
    mine, theirs = np.argsort(ours.boxes[:, 0]), np.argsort(boxes[:, 0])
    np.testing.assert_allclose(ours.boxes[mine], boxes[theirs], atol=1.0)  # within a pixel
    np.testing.assert_allclose(ours.probs[mine], probs[theirs], atol=1e-4)
    np.testing.assert_allclose(ours.landmarks[mine], points[theirs], atol=1.0)


def test_mtcnn_pyramid_and_crops_on_the_host_are_torchs_area_interpolation_bit_for_bit():
    """The CPU path takes pyramid levels and crops from an integral image; a GPU keeps torch's interpolation."""
    frames = np.stack([ASTRONAUT, _pair()[:, :512]])
    host, device = mtcnn._IntegralPixels(frames), mtcnn._DevicePixels(frames, "cpu")
    for size in [(307, 307), (218, 218), (12, 12), (512, 512), (100, 37)]:
        assert torch.equal(host.level(*size), device.level(*size)), size
    regions = np.array([[170, 50, 280, 160], [0, 0, 512, 512], [10, 400, 11, 420], [200, 300, 260, 512]])
    for size in (24, 48):
        assert torch.equal(host.crops(regions, np.array([0, 1, 1, 0]), size), device.crops(regions, np.array([0, 1, 1, 0]), size))


@pytest.mark.parametrize("int32_pixels", [mtcnn.INT32_PIXELS, 0], ids=["int32", "int64 (frames too large for int32)"])
def test_mtcnn_integral_image_is_exact_on_strided_frames(int32_pixels, monkeypatch):
    """OpenCV's integral image equals NumPy's sums in int64, on frames that are views with strides (every other
    column, channels reversed), in int32 and in the float64 path that frames of over 8.4 Mpixel take."""
    monkeypatch.setattr(mtcnn, "INT32_PIXELS", int32_pixels)
    frames = np.stack([ASTRONAUT, _pair()[:, :512]])[:, 5:300, ::2, ::-1]
    integral = mtcnn._IntegralPixels(frames).integral
    expected = np.zeros((2, 296, 257, 3), np.int64)
    expected[:, 1:, 1:] = frames.astype(np.int64).cumsum(axis=1).cumsum(axis=2)
    assert integral.dtype == (np.int32 if int32_pixels else np.int64)
    np.testing.assert_array_equal(integral, expected)


def test_a_box_pushed_out_of_the_frame_loses_its_crop_and_nothing_else(nets, monkeypatch):
    """R-Net's regression can move a box wholly outside the frame; it has no crop, and the other boxes go on (the
    reference kept it, so that O-Net's scores no longer lined up with the boxes: an IndexError)."""
    regress, calls = mtcnn._regress, []

    def push_the_last_box_out(boxes, reg):
        boxes = regress(boxes, reg)
        if not calls:  # after R-Net only
            boxes[-1, [0, 2]] += 10_000
        calls.append(len(boxes))
        return boxes

    monkeypatch.setattr(mtcnn, "_regress", push_the_last_box_out)
    with torch.inference_mode():
        found = mtcnn.detect(nets, ASTRONAUT[None])[0]
    assert calls[0] > 1 and len(found.boxes) == 1 and found.probs[0] > 0.99  # the face is still found


@pytest.mark.parametrize("height, width", [(215, 383), (216, 384), (13, 12), (1, 1)])
def test_pnet_pooling_is_torchs_ceil_mode_max_pool(height, width):
    pool = mtcnn.build_networks()[0].pool1
    values = torch.randn(2, 10, height, width, generator=torch.Generator().manual_seed(0))
    for layout in (torch.contiguous_format, torch.channels_last):
        x = values.contiguous(memory_format=layout)
        assert torch.equal(pool(x), torch.nn.MaxPool2d(2, 2, ceil_mode=True)(x)), layout

def test_mini_xception_matches_the_original_keras_model():
    os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 runs the legacy .hdf5 model on this torch
    import keras

    path = require("fer2013_mini_xception")[0]
    model = build_mini_xception()
    load_state_dict_strict(model, state_dict_from_keras(path), "mini-Xception")
    model.eval()
    rng = np.random.default_rng(0)
    face = grey_crop(ASTRONAUT, np.array([170, 50, 110, 110]), 64)
    crops = np.stack([face, face[:, ::-1], rng.integers(0, 255, (64, 64), dtype=np.uint8), np.full((64, 64), 128, np.uint8)])
    with torch.no_grad():
        ours = torch.softmax(model(torch.as_tensor(preprocess(crops))), dim=1).numpy()
    reference = np.asarray(keras.models.load_model(path, compile=False).predict(preprocess(crops).transpose(0, 2, 3, 1), verbose=0))
    np.testing.assert_allclose(ours, reference, atol=1e-5)  # float32 on both sides; measured 4e-7
    assert sum(p.numel() for p in model.parameters()) == 56951  # "about 58k" as published (+ batch-norm statistics)


def test_the_astronaut_has_one_face_where_it_is_and_it_smiles():
    faces, expression = extractors.create("faces"), extractors.create("face_expression")
    faces.setup()
    expression.setup()
    found = faces.extract(timed(np.stack([ASTRONAUT, BLANK])), None, {})
    named = dict(zip(faces.feature_names, found.values[0]))
    assert named["n_faces"] == 1 and named["largest_prob"] > 0.99
    assert 0.3 < named["largest_x"] < 0.4 and 0.1 < named["largest_y"] < 0.2  # upper left of centre, as in the photo
    assert found.values[1, 0] == 0 and np.isnan(found.values[1, 1:]).all()
    feeling = expression.extract(timed(np.stack([ASTRONAUT, BLANK])), None, {"faces": found})
    top = FER_CLASSES[int(np.argmax(feeling.values[0, :7]))]
    assert top == "happy" and feeling.values[0, FER_CLASSES.index("happy")] > 0.9
    assert np.isnan(feeling.values[1, :7]).all() and feeling.values[1, 7] == 0


def test_expression_aggregates_faces_by_area_and_reuses_the_dependency_boxes():
    faces, expression = extractors.create("faces"), extractors.create("face_expression")
    faces.setup()
    expression.setup()
    pair = timed(_pair()[None])
    found = faces.extract(pair, None, {})
    per_frame = found.detail[0]
    assert len(per_frame.boxes) == 2
    with_context = expression.extract(pair, None, {"faces": found})
    np.testing.assert_array_equal(expression.extract(pair, None, {}).values, with_context.values)  # detected again: same
    probs = expression.probabilities(np.stack(expression.crops(pair.images[0], per_frame)))
    areas = (per_frame.boxes[:, 2] * per_frame.boxes[:, 3]).astype(float)
    np.testing.assert_allclose(with_context.values[0, :7], (probs * areas[:, None]).sum(axis=0) / areas.sum(), rtol=1e-5)
    assert with_context.values[0, 7] == 2


def test_real_cartoon_frames_haar_versus_mtcnn(shared_data):
    """Big Buck Bunny has no human face: count the frames where each detector still fires (reported in the README)."""
    spec = VideoSpec(fps=2, short_side=360)
    frames = decode(probe(str(shared_data / "video" / "big_buck_bunny_0_30.webm")), video_specs={spec}).video[spec]
    haar = sum(len(b) > 0 for b in detect_faces(haar_cascade(), frames.images))
    faces = extractors.create("faces")
    faces.setup()
    mtcnn_frames = int((faces.extract(frames, None, {}).values[:, 0] > 0).sum())
    print(f"Big Buck Bunny, 60 frames at 2 fps: Haar {haar}, MTCNN {mtcnn_frames} frames with a 'face'")
    assert haar <= 6 and mtcnn_frames <= 3  # measured: Haar 1, MTCNN 0


def test_face_crops_level_the_eyes_and_spread_over_the_clip():
    crops = extractors.create("face_crops", n_crops="5")
    crops.setup()
    block = crops.extract(timed(np.stack([BLANK, ASTRONAUT, BLANK, ASTRONAUT])), None, {})
    assert block.values.shape == (5, CROP * CROP) and crops.value_shape == (CROP, CROP) and crops.storage_dtype == "uint8"
    np.testing.assert_allclose(block.times[:, 0], [0.5, 1.5, 0.5, 1.5, 0.5])  # frames 1 and 3, then repeated
    # A tilted head: the aligned crop of the tilted photo looks like the upright one, a plain crop does not.
    tilt = cv2.getRotationMatrix2D((220.0, 120.0), -20, 1.0)
    tilted = cv2.warpAffine(ASTRONAUT, tilt, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    faces = extractors.create("faces")
    faces.setup()
    upright, leaning = (faces.extract(timed(img[None]), None, {}).detail[0] for img in (ASTRONAUT, tilted))
    reference = aligned_crop(ASTRONAUT, upright, 0).astype(float).ravel()
    aligned = aligned_crop(tilted, leaning, 0).astype(float).ravel()
    plain = grey_crop(tilted, square_box(leaning.boxes[0], 512, 512), CROP).astype(float).ravel()
    assert np.corrcoef(reference, aligned)[0, 1] > np.corrcoef(reference, plain)[0, 1] + 0.05


def test_the_vgg19_path_stays_available():
    model = build_vgg19_fer().eval()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and model.classifier.out_features == 7 and model(torch.zeros(2, 3, 44, 44)).shape == (2, 7)
    vgg = extractors.create("face_expression", model="vgg19")
    assert vgg.weights[0].name == "vgg19_fer2013"
    vgg.setup("cpu", random_weights=True)
    assert vgg.probabilities(np.zeros((2, 48, 48), np.uint8)).shape == (2, 7)


def test_no_face_is_a_result_and_the_mvf_face_branch_trains_with_faceless_clips(demo_corpus, tmp_path):
    """face_crops of a clip without a face was a failure row, so a corpus with faceless clips ended `extract` with
    exit code 1; now such a clip stores zero crops, and MVF's face branch sees blank crops for it (and says so)."""
    from mvfx.media.encode import write_mp4
    from mvfx.stores import open_store

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for k in range(2):
        (corpus / f"landscape_{k}.mp4").write_bytes((demo_corpus / f"clip_00{k}.mp4").read_bytes())
        photo = cv2.resize(ASTRONAUT, (640, 640))
        write_mp4(corpus / f"astronaut_{k}.mp4", (np.ascontiguousarray(photo[100 + 10 * k : 460 + 10 * k, i : i + 480]) for i in range(48)), 24)
    store = tmp_path / "s.zarr"
    result = run_cli("extract", corpus, "--store", store, "-e", "face_crops", "-o", "face_crops.n_crops=4", "-j", "1")
    assert result.exit_code == 0, result.stderr
    s = open_store(store)
    assert [len(s.read("face_crops", c)[0]) for c in ("landscape_0", "landscape_1", "astronaut_0", "astronaut_1")] == [0, 0, 4, 4]
    assert s.failures().empty and s.verify() == [] and set(s.clips()["status"]) == {"ok"}
    pd_labels = "clip_id,label\nlandscape_0,calm\nlandscape_1,calm\nastronaut_0,joy\nastronaut_1,joy\n"
    (tmp_path / "labels.csv").write_text(pd_labels)
    run = run_cli("train", "mvf", store, "--labels", tmp_path / "labels.csv", "--face", "A0", "--folds", "2", "--epochs", "2",
                  "--out", tmp_path / "run")
    assert run.exit_code == 0, run.stderr
    assert "2 of 4 clips have no face; their face input is blank (zero) crops" in run.stderr
