"""Registry of pretrained weight files, the local cache, and safe checkpoint loading.

Nothing downloads at extraction time. ``mvfx weights fetch`` downloads where
a network exists; ``mvfx weights import NAME FILE`` copies a file the user
already has (air-gapped clusters). Every file is checked against the sha256
the registry records. Where the publisher states no hash, the entry says
so, the first file seen is trusted and its hash is recorded in the cache
(``<name>.sha256``) and in every store's provenance.

Checkpoints are read with ``torch.load(weights_only=True)`` (no code runs
while loading) and mapped onto our modules with strict key and shape checks.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import MvfxError

CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    name: str
    extractors: tuple[str, ...]
    filename: str
    url: str
    sha256: str | None  # full hex digest; None when the publisher gives none
    licence: str
    approx_mb: float
    source: str  # who published it, and how it was converted if it was


REGISTRY: dict[str, WeightFile] = {}


def register_weights(entry: WeightFile) -> WeightFile:
    REGISTRY[entry.name] = entry
    return entry


register_weights(WeightFile(
    name="vggish",
    extractors=("vggish", "vggish_pca"),
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
    licence="Apache-2.0",
    approx_mb=275,
    source="Google AudioSet VGGish (TF-slim vggish_model.ckpt) ported to a PyTorch state dict by torchvggish "
    "(H. Taylor); keys match torchvggish.torchvggish.VGG",
))
register_weights(WeightFile(
    name="vggish_pca",
    extractors=("vggish_pca",),
    filename="vggish_pca_params.npz",
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    sha256=None,
    licence="Apache-2.0",
    approx_mb=0.07,
    source="Google AudioSet release: PCA (with whitening) eigenvectors and means for the AudioSet embedding "
    "post-processing; arrays pca_eigen_vectors [128, 128], pca_means [128]",
))


def mvfx_home() -> Path:
    return Path(os.environ.get("MVFX_HOME", Path.home() / ".cache" / "mvfx"))


def cache_dir() -> Path:
    return mvfx_home() / "weights"


def entry(name: str) -> WeightFile:
    try:
        return REGISTRY[name]
    except KeyError:
        raise MvfxError(f"unknown weight file {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def cached_path(name: str) -> Path:
    return cache_dir() / entry(name).filename


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _recorded_hash(name: str) -> Path:
    return cache_dir() / f"{entry(name).filename}.sha256"


def status(name: str) -> tuple[str, str | None]:
    """('missing' | 'ok' | 'unverified' | 'wrong hash', sha256 of the cached file or None)."""
    path = cached_path(name)
    if not path.is_file():
        return "missing", None
    digest = file_sha256(path)
    expected = entry(name).sha256
    if expected is None:
        recorded = _recorded_hash(name).read_text().strip() if _recorded_hash(name).is_file() else digest
        return ("unverified" if recorded == digest else "wrong hash"), digest
    return ("ok" if digest == expected else "wrong hash"), digest


def require(name: str) -> tuple[Path, str]:
    """Path and sha256 of a usable cached file, or a one-line error naming both ways to get it."""
    state, digest = status(name)
    if state in ("ok", "unverified"):
        return cached_path(name), digest
    e = entry(name)
    problem = "is missing" if state == "missing" else f"has the wrong sha256 ({digest[:12]}..., expected {e.sha256[:12]}...)"
    raise MvfxError(
        f"weight file {e.filename} ({e.name}) {problem} in {cache_dir()}: run `mvfx weights fetch {e.name}` "
        f"where a network exists, or `mvfx weights import {e.name} FILE` with a copy of {e.url}"
    )


def import_file(name: str, source: Path, force: bool = False) -> str:
    """Copy a user's file into the cache after checking its hash; returns the sha256."""
    e = entry(name)
    source = Path(source)
    if not source.is_file():
        raise MvfxError(f"{source}: no such file")
    digest = file_sha256(source)
    if e.sha256 is not None and digest != e.sha256 and not force:
        raise MvfxError(
            f"{source}: sha256 {digest[:16]}... does not match the registry's {e.sha256[:16]}... for {e.name} "
            f"({e.url}); not imported"
        )
    cache_dir().mkdir(parents=True, exist_ok=True)
    tmp = cached_path(name).with_suffix(".importing")
    shutil.copyfile(source, tmp)
    os.replace(tmp, cached_path(name))
    if e.sha256 is None or force:
        _recorded_hash(name).write_text(digest + "\n")
    return digest


def fetch(name: str, on_progress: Callable[[int, int | None], None] | None = None, timeout: float = 20.0) -> str:
    """Download into the cache (resuming a .part file when the server allows), verify, return sha256."""
    e = entry(name)
    cache_dir().mkdir(parents=True, exist_ok=True)
    part = cached_path(name).with_suffix(".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(e.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            total = response.headers.get("Content-Length")
            total = int(total) + (have if resumed else 0) if total else None
            done = have if resumed else 0
            with open(part, "ab" if resumed else "wb") as f:
                while block := response.read(CHUNK):
                    f.write(block)
                    done += len(block)
                    if on_progress:
                        on_progress(done, total)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MvfxError(
            f"cannot download {e.name} from {e.url} ({reason}); without network, copy the file here and run "
            f"`mvfx weights import {e.name} FILE`"
        ) from None
    digest = file_sha256(part)
    if e.sha256 is not None and digest != e.sha256:
        part.unlink()
        raise MvfxError(f"downloaded {e.filename} has sha256 {digest[:16]}..., expected {e.sha256[:16]}...; deleted")
    os.replace(part, cached_path(name))
    if e.sha256 is None:
        _recorded_hash(name).write_text(digest + "\n")
    return digest


def load_checkpoint(path: Path, what: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MvfxError(f"{path}: refused to load as {what} weights (not a plain tensor checkpoint: {first})") from None


def load_state_dict_strict(module, state_dict: dict, what: str, rename: Callable[[str], str] | None = None) -> None:
    """Copy ``state_dict`` into ``module`` after checking every key and shape; one-line error on the first mismatch."""
    if rename is not None:
        state_dict = {rename(k): v for k, v in state_dict.items()}
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        first = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise MvfxError(f"{what} checkpoint does not fit the model: {first} ({len(missing)} missing, {len(unexpected)} unexpected)")
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise MvfxError(f"{what} checkpoint does not fit the model: {key} has shape {tuple(state_dict[key].shape)}, expected {tuple(tensor.shape)}")
    module.load_state_dict(state_dict, strict=True)
