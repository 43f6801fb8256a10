"""Weights registry: hashes, import, fetch over loopback HTTP, safe and strict loading."""
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

from mvfx.extractors import weights
from mvfx.extractors.checkpoints import load_checkpoint, load_state_dict_strict
from mvfx.extractors.weight_registry import REGISTRY, WeightFile
from mvfx.extractors.weights import fetch, import_file, status
from mvfx.media.errors import MvfxError
from mvfx.media.hashing import file_sha256


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MVFX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def toy_entry(tmp_path, monkeypatch):
    """A registry entry whose hash is that of a real checkpoint file written here."""
    src = tmp_path / "toy.pth"
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, src)
    entry = WeightFile("toy", "toy-v1.pth", "http://127.0.0.1:9/toy.pth", file_sha256(src), "MIT", 0.0, "test")
    monkeypatch.setitem(REGISTRY, "toy", entry)
    return src


def test_good_corrupted_and_wrong_files(home, toy_entry, tmp_path):
    assert status("toy") == ("missing", None)
    import_file("toy", toy_entry)
    assert status("toy")[0] == "ok"
    cached = weights.cached_path("toy")
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    assert status("toy")[0] == "wrong hash"
    with pytest.raises(MvfxError, match="has the wrong sha256"):
        weights.require("toy")
    wrong = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(1)}, wrong)
    with pytest.raises(MvfxError, match="does not match the registry's"):
        import_file("toy", wrong)
    import_file("toy", wrong, force=True)  # e.g. a fine-tuned checkpoint, recorded as such, and then used
    assert status("toy")[0] == "forced" and weights.require("toy")[1] == file_sha256(wrong)
    weights.cached_path("toy").write_bytes(b"changed after the forced import")
    assert status("toy")[0] == "wrong hash"


def test_digests_are_cached_by_size_and_mtime(home, toy_entry, monkeypatch):
    import_file("toy", toy_entry)
    hashed = []
    monkeypatch.setattr(weights, "file_sha256", lambda path: hashed.append(path) or file_sha256(path))
    assert status("toy")[0] == "ok" and status("toy")[0] == "ok" and hashed == []  # the import already recorded it
    cached = weights.cached_path("toy")
    stat = cached.stat()
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert status("toy")[0] == "ok" and hashed == [cached]  # touched: hashed again, once
    assert status("toy")[0] == "ok" and hashed == [cached]


def test_missing_file_message_names_the_file_and_both_commands(home):
    with pytest.raises(MvfxError) as err:
        weights.require("vggish")
    text = str(err.value)
    assert "vggish-10086976.pth" in text and "mvfx weights fetch vggish" in text and "mvfx weights import vggish FILE" in text


def test_unpublished_hash_is_trusted_on_first_import_then_checked(home, tmp_path):
    npz = tmp_path / "pca.npz"
    npz.write_bytes(b"PCA" * 10)
    import_file("vggish_pca", npz)
    assert status("vggish_pca")[0] == "unverified"
    weights.cached_path("vggish_pca").write_bytes(b"changed")
    assert status("vggish_pca")[0] == "wrong hash"
    with pytest.raises(MvfxError, match=r"has the wrong sha256 \(.*expected "):  # was a TypeError on the missing hash
        weights.require("vggish_pca")


def test_listing_extractors_and_weights_writes_nothing(home):
    """A status call must not write: `mvfx extractors` copied the packaged face weights into the cache."""
    from helpers import run_cli

    assert run_cli("extractors", "--json").exit_code == 0 and run_cli("weights", "list").exit_code == 0
    assert not home.exists()
    assert status("mtcnn_pnet")[0] == "packaged" and weights.require("mtcnn_pnet")[0].is_file()  # first use copies it


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_over_loopback_http_verifies_and_restarts_a_stale_part(home, toy_entry, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(toy_entry.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/toy.pth"
        monkeypatch.setitem(REGISTRY, "toy", REGISTRY["toy"].__class__(**{**REGISTRY["toy"].__dict__, "url": url}))
        weights.cache_dir().mkdir(parents=True)
        weights.cached_path("toy").with_suffix(".part").write_bytes(b"junk from an earlier try")
        seen = []
        digest = fetch("toy", on_progress=lambda done, total: seen.append((done, total)))
    finally:
        server.shutdown()
    assert digest == REGISTRY["toy"].sha256 and status("toy")[0] == "ok"
    assert seen[-1] == (toy_entry.stat().st_size, toy_entry.stat().st_size)


def test_fetch_without_network_fails_at_once_pointing_to_import(home, toy_entry):
    with pytest.raises(MvfxError, match=r"cannot download toy .*mvfx weights import toy FILE"):
        fetch("toy", timeout=2)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/mvfx-pwned",))


def test_weights_only_refuses_a_pickle_that_runs_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state": _Exploit()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(MvfxError, match="refused to load as toy weights"):
        load_checkpoint(path, "toy")
    assert not Path("/tmp/mvfx-pwned").exists()


def test_strict_mapping_rejects_tampered_state_dicts():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    good = model.state_dict()
    load_state_dict_strict(model, dict(good), "toy")
    renamed = {("0.weights" if k == "0.weight" else k): v for k, v in good.items()}
    with pytest.raises(MvfxError, match=r"missing key '0.weight' \(1 missing, 1 unexpected\)"):
        load_state_dict_strict(model, renamed, "toy")
    with pytest.raises(MvfxError, match=r"2.weight has shape \(1, 3\), expected \(1, 2\)"):
        load_state_dict_strict(model, {**good, "2.weight": torch.zeros(1, 3)}, "toy")
    prefixed = {f"module.{k}": v for k, v in good.items()}
    load_state_dict_strict(model, prefixed, "toy", rename=lambda k: k.removeprefix("module."))
