"""VGGish (AudioSet) embeddings: 128 values per 0.96 s example of 16 kHz audio.

Architecture: torchvggish's port of the TF-slim VGGish (``torchvggish.VGG``),
with its published PyTorch state dict (see ``mvfx weights list``). Input
pipeline, re-implemented vectorised and tested against torchvggish's
``waveform_to_examples``: 25 ms periodic-Hann frames every 10 ms, 512-point
FFT magnitude, 64 HTK-mel bands over 125-7500 Hz, ``log(mel + 0.01)``, framed
into examples of 96 frames (0.96 s) every ``hop_s`` (0.96 s by default). Row
k covers [k*hop, k*hop + 0.96] s (the analysis window reaches 15 ms further).
A clip shorter than one example is zero-padded to one.

``vggish_pca`` applies AudioSet's released post-processing: PCA with
whitening, clipping to [-2, 2] and 8-bit quantisation (values 0..255, as in
the AudioSet and YouTube-8M embeddings). ``-o vggish.pooling=mean`` stores one
clip-level mean vector instead (as EmoMV uses).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, TimeGrid, option, single_threaded_blas
from mvfx.extractors.registry import register
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import WeightFile, register_weights
from mvfx.extractors.weights import require
from mvfx.media.decode import AudioSpec
from mvfx.media.errors import MvfxError
from mvfx.media.probe import ClipInfo

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512
MEL_BINS = 64
MEL_RANGE = (125.0, 7500.0)
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
EXAMPLE_S = EXAMPLE_FRAMES * HOP / SAMPLE_RATE  # 0.96
MIN_SAMPLES = WINDOW + (EXAMPLE_FRAMES - 1) * HOP  # samples needed for one example
VGGISH = register_weights(WeightFile(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
    licence="Apache-2.0",
    approx_mb=275,
    source="Google AudioSet VGGish (TF-slim vggish_model.ckpt) ported to a PyTorch state dict by torchvggish "
    "(H. Taylor); keys match torchvggish.torchvggish.VGG",
))
VGGISH_PCA = register_weights(WeightFile(
    name="vggish_pca",
    filename="vggish_pca_params.npz",
    url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
    sha256=None,
    licence="Apache-2.0",
    approx_mb=0.07,
    source="Google AudioSet release: PCA (with whitening) eigenvectors and means for the AudioSet embedding "
    "post-processing; arrays pca_eigen_vectors [128, 128], pca_means [128]",
))


def hertz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK mel scale, as in the VGGish reference."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_matrix() -> np.ndarray:
    """[257, 64] triangular HTK-mel weights; the DC bin gets no weight (reference behaviour)."""
    bins_mel = hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))[:, None]
    edges = np.linspace(*hertz_to_mel(np.array(MEL_RANGE)), MEL_BINS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((bins_mel - lower) / (centre - lower), (upper - bins_mel) / (upper - centre)))
    weights[0, :] = 0.0
    return weights


def frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Non-padded framing along axis 0 (a view)."""
    n = 1 + (len(x) - length) // hop
    return np.lib.stride_tricks.sliding_window_view(x, length, axis=0)[::hop][:n]


def log_mel_examples(audio: np.ndarray, hop_s: float = EXAMPLE_S) -> np.ndarray:
    """[N, 96, 64] log-mel examples of 16 kHz mono audio, every ``hop_s`` seconds."""
    audio = np.asarray(audio, np.float64)
    if len(audio) < MIN_SAMPLES:
        audio = np.pad(audio, (0, MIN_SAMPLES - len(audio)))
    window = 0.5 - 0.5 * np.cos(2 * np.pi / WINDOW * np.arange(WINDOW))  # periodic Hann
    spectrum = np.abs(np.fft.rfft(frames(audio, WINDOW, HOP) * window, FFT))
    with single_threaded_blas():  # the same sums on every executor
        log_mel = np.log(spectrum @ mel_matrix() + LOG_OFFSET)
    examples = frames(log_mel, EXAMPLE_FRAMES, int(round(hop_s * SAMPLE_RATE / HOP)))  # [N, 64, 96]
    return examples.transpose(0, 2, 1).copy()  # C-contiguous and writable


@dataclass(frozen=True)
class VggishConfig(TorchConfig):
    hop_s: float = option(EXAMPLE_S, minimum=HOP / SAMPLE_RATE)  # at least one 10 ms log-mel frame
    pooling: str = option("none", choices=("none", "mean"))  # "none": one row per example; "mean": one clip row


@register
class Vggish(TorchExtractor):
    name = "vggish"
    version = "1"
    modality = "audio"
    summary = "VGGish AudioSet embedding, 128-d per 0.96 s example (raw, before PCA)"
    config_class = VggishConfig
    libraries = ("torch", "torchvggish")
    weights: tuple[WeightFile, ...] = (VGGISH,)
    postprocess = False
    cpu_batch_size = 64
    mb_per_item = 2.0

    @property
    def input(self) -> AudioSpec:
        return AudioSpec(SAMPLE_RATE)

    @property
    def time_grid(self) -> TimeGrid:
        if self.config.pooling == "mean":
            return TimeGrid("clip", None, None)
        return TimeGrid("window", EXAMPLE_S, self.config.hop_s)

    @property
    def feature_names(self) -> list[str]:
        return [f"{self.name}_{i:03d}" for i in range(128)]

    def build(self):
        from torchvggish.torchvggish import VGG, make_layers

        return VGG(make_layers(), postprocess=False)

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        super().setup(device, random_weights)
        if self.postprocess:
            self.pca_matrix, self.pca_means = self._pca_params()

    def _pca_params(self):
        import torch

        if self.random_weights:
            gen = torch.Generator().manual_seed(0)
            q, _ = torch.linalg.qr(torch.randn(128, 128, generator=gen))
            return q.to(self.device), torch.zeros(128, device=self.device)
        path, _ = require(VGGISH_PCA)
        with np.load(path, allow_pickle=False) as params:
            matrix, means = params["pca_eigen_vectors"], params["pca_means"].reshape(-1)
        if matrix.shape != (128, 128) or means.shape != (128,):
            raise MvfxError(f"{path}: PCA parameters have shapes {matrix.shape} and {means.shape}, expected (128, 128) and (128,)")
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=self.device)  # noqa: E731
        return as_tensor(matrix), as_tensor(means)

    def embed(self, examples: np.ndarray) -> np.ndarray:
        """[N, 96, 64] log-mel examples -> [N, 128] embeddings, in batches."""

        def forward(batch):
            emb = self.model(batch[:, None].float())
            return self.quantise(emb.float()) if self.postprocess else emb

        return self.run_batches(forward, examples.astype(np.float32), 128)

    def quantise(self, emb):
        """AudioSet post-processing: PCA (with whitening), clip to [-2, 2], 8-bit quantisation."""
        import torch

        projected = (emb - self.pca_means) @ self.pca_matrix.T
        return torch.round((torch.clamp(projected, -2.0, 2.0) + 2.0) * (255.0 / 4.0))

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        values = self.embed(log_mel_examples(data, self.config.hop_s))
        starts = np.arange(len(values)) * self.config.hop_s
        times = np.stack([starts, starts + EXAMPLE_S], axis=1)
        if self.config.pooling == "mean":
            values, times = values.mean(axis=0, keepdims=True), np.array([[0.0, len(data) / SAMPLE_RATE]])
        return FeatureBlock(values, times)


@register
class VggishPca(Vggish):
    name = "vggish_pca"
    summary = "VGGish AudioSet embedding after PCA + 8-bit quantisation (AudioSet release format)"
    weights = (VGGISH, VGGISH_PCA)
    postprocess = True
