"""musicnn embeddings and tags (Pons & Serra 2019): real weights out of the box, from the musicnn wheel.

Input (musicnn's ``extractor.py``): 16 kHz mono, a centred STFT of 512 points
every 256 samples (zero-padded), power mel spectrogram of 96 bands (Slaney),
computed as librosa computes it but in numpy alone (``melspec``), patches of
187 frames (2.992 s, musicnn's 3 s input) every ``hop_s`` (default 2.992 s: no
overlap, as musicnn's own extractor). Row k covers [k * hop, k * hop + 2.992] s. A clip shorter than one
patch is repeated to fill one (musicnn-training's "repeat-pad"), its row
covering the whole clip.

Log compression: the mel is rounded to float16, as musicnn stores it, and
``log10(10000 x + 1)`` is computed in float32. That is the input the networks
were trained on: musicnn-training's loader took the float16 mel its
preprocessing stored and applied this log under NumPy < 1.17, whose
value-based casting computed ``10000 * float16 array`` in float32. Under
NumPy 2 (NEP 50) the same line of musicnn's ``batch_data`` stays in float16
and overflows to inf wherever the mel power exceeds 6.55, most patches of
normal music; the network then gives one constant taggram (docs/extractors.md
has the figures).

Weights: the TF 1 checkpoints of ``musicnn==0.1.0`` (``MODELS``: entries
``musicnn_msd``/``musicnn_mtt`` and their ``_index``), read with
``tensorbundle.read_bundle`` at set-up (9.5 MB, 0.1 s: no converted copy to keep
in step) into the torch port of ``musicnn_net``. ``-o musicnn.model=mtt`` takes
the MagnaTagATune model instead of the Million Song Dataset one.

- ``musicnn``: the 200-d penultimate embedding (batch-normalised dense layer).
- ``musicnn_tags``: the 50 tag probabilities (sigmoid of the logits), named by
  the model's tag list. It depends on ``musicnn``: when that ran on the same
  clip with the same model, hop and precision, its logits are taken (one
  forward pass for both sets); otherwise (stored earlier, another
  configuration) it runs the network itself.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import FeatureBlock, TimeGrid, option, single_threaded_blas
from mvfx.extractors.checkpoints import load_state_dict_strict
from mvfx.extractors.melspec import power_mel
from mvfx.extractors.registry import register
from mvfx.extractors.streams import Stream, WholeAudio
from mvfx.extractors.torch_base import TorchConfig, TorchExtractor
from mvfx.extractors.weight_registry import WeightFile, chosen_by, register_weights
from mvfx.extractors.weights import require
from mvfx.media.decode import AudioSpec
from mvfx.media.probe import ClipInfo

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # musicnn's 3 s input: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
FRAME_S = HOP / SAMPLE_RATE  # 0.016 s
PATCH_S = PATCH_FRAMES * FRAME_S  # 2.992 s
PATCHES_PER_BLOCK = 32  # patches stacked at once (2.3 MB)
PENULTIMATE = 200
N_TAGS = 50


def musicnn_weights(model: str, data_sha256: str, index_sha256: str, about: str) -> tuple[WeightFile, WeightFile]:
    """Register the TF 1 checkpoint ``model`` as the musicnn 0.1.0 wheel ships it: its .data shard (the tensors) and
    its .index (where each tensor is), both read with mvfx's TensorBundle reader, no TensorFlow (``tensorbundle``)."""
    folder = f"musicnn/{model.upper()}_musicnn/"

    def part(kind: str, name_suffix: str, suffix: str, sha256: str, approx_mb: float) -> WeightFile:
        return register_weights(WeightFile(
            name=f"musicnn_{model}{name_suffix}",
            filename=f"musicnn_{model}{suffix}",
            url="https://pypi.org/project/musicnn/0.1.0/",
            sha256=sha256,
            licence="ISC (jordipons/musicnn; (c) Music Technology Group, Universitat Pompeu Fabra)",
            approx_mb=approx_mb,
            source=f"musicnn {model.upper()}_musicnn (Pons & Serra 2019; {about}), the TensorFlow 1 checkpoint musicnn "
            f"0.1.0 ships as {folder}{suffix} ({kind} file); ported to torch (extractors/musicnn_net.py)",
            categories=f"musicnn_{model}_tags.txt",
            package_file=f"musicnn==0.1.0:{folder}{suffix}",
        ))

    return part("data", "", ".data-00000-of-00001", data_sha256, 9.47), part("index", "_index", ".index", index_sha256, 0.005)


# -o musicnn.model=...: msd, the Million Song Dataset tagger (mood tags among its 50), or mtt, MagnaTagATune's
MODELS = {"msd": musicnn_weights("msd", "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
                                 "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
                                 "Million Song Dataset, 50 last.fm tags (moods among them), ROC-AUC 0.880"),
          "mtt": musicnn_weights("mtt", "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
                                 "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
                                 "MagnaTagATune, 50 tags, ROC-AUC 0.907")}


def log_compress(mel: np.ndarray) -> np.ndarray:
    """musicnn's input from a mel power spectrogram: rounded to float16, then log10(10000 x + 1) in float32."""
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """[frames, 96] musicnn input of 16 kHz audio: the centred STFT's mel (librosa's, ``melspec``), log-compressed.

    The clip's whole spectrogram is made at once, as musicnn does (0.4 times the audio's bytes).
    """
    padded = np.pad(np.asarray(audio, np.float32), N_FFT // 2)  # a centred STFT's zero padding
    with single_threaded_blas():  # the same sums on every executor
        return log_compress(power_mel(padded, SAMPLE_RATE, N_FFT, HOP, N_MELS))


def patch_times(n_samples: int, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """First frame of each patch, and each patch's [start, end] seconds, for ``n_samples`` of audio."""
    n_frames = 1 + n_samples // HOP
    if n_frames < PATCH_FRAMES:
        return np.zeros(1, np.int64), np.array([[0.0, n_samples / SAMPLE_RATE]])
    starts = np.arange(0, n_frames - PATCH_FRAMES + 1, hop_frames)
    return starts, np.stack([starts * FRAME_S, starts * FRAME_S + PATCH_S], axis=1)


def patch_blocks(spectrogram: np.ndarray, starts: np.ndarray) -> Iterator[np.ndarray]:
    """[n, 187, 96] patches of a log-mel spectrogram starting at the frames ``starts``, a block of patches at a time;
    a spectrogram shorter than one patch is repeated to fill one."""
    if len(spectrogram) < PATCH_FRAMES:
        yield np.resize(spectrogram, (1, PATCH_FRAMES, N_MELS))
        return
    for a in range(0, len(starts), PATCHES_PER_BLOCK):
        yield np.stack([spectrogram[s : s + PATCH_FRAMES] for s in starts[a : a + PATCHES_PER_BLOCK]])


@dataclass(frozen=True)
class MusicnnConfig(TorchConfig):
    model: str = option("msd", choices=tuple(MODELS))
    hop_s: float = option(PATCH_S, minimum=FRAME_S)  # patch hop, rounded to whole 16 ms frames; default: no overlap


@dataclass(frozen=True)
class TagLogits:
    """The tag logits of a ``musicnn`` block's rows (``FeatureBlock.detail``), and what made them."""

    model: str
    precision: str
    logits: np.ndarray


@register
class Musicnn(TorchExtractor):
    name = "musicnn"
    version = "1"
    modality = "audio"
    summary = "musicnn 200-d penultimate embedding per 3 s patch (MSD or MTT tagger; real weights from the musicnn wheel)"
    config_class = MusicnnConfig
    libraries = ("torch", "numpy")
    weights = chosen_by("model", MODELS)  # the checkpoint's data, then its index
    cpu_batch_size = 2  # one thread, per patch: 45 ms at 2, 55 ms at 8 (a patch's activations, 25 MB, stay in cache)
    mb_per_item = 40.0

    @property
    def hop_frames(self) -> int:
        return max(1, round(self.config.hop_s / FRAME_S))

    @property
    def input(self) -> AudioSpec:
        return AudioSpec(SAMPLE_RATE)

    @property
    def time_grid(self) -> TimeGrid:
        return TimeGrid("window", PATCH_S, self.hop_frames * FRAME_S)

    @property
    def feature_names(self) -> list[str]:
        return [f"musicnn_{i:03d}" for i in range(PENULTIMATE)]

    def build(self):
        from mvfx.extractors.musicnn_net import build_musicnn

        return build_musicnn(N_TAGS)

    def load_weights(self) -> None:
        from mvfx.extractors.musicnn_net import state_dict_from_checkpoint
        from mvfx.extractors.tensorbundle import read_bundle

        data, index = (require(w)[0] for w in self.weights)
        load_state_dict_strict(self.model, state_dict_from_checkpoint(read_bundle(index, data), str(data)), self.name)

    def stream(self, info: ClipInfo, context: dict[str, FeatureBlock]) -> Stream:
        return WholeAudio(self, info, context)

    def embed(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patch times [N, 2], penultimate embeddings [N, 200] and tag logits [N, 50] of 16 kHz mono audio."""
        import torch

        starts, times = patch_times(len(audio), self.hop_frames)
        rows = [self.run_batches(lambda x: torch.cat(self.model(x), dim=1), patches, PENULTIMATE + N_TAGS)
                for patches in patch_blocks(log_mel(audio), starts)]
        out = np.concatenate(rows)
        return times, out[:, :PENULTIMATE], out[:, PENULTIMATE:]

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        times, penultimate, logits = self.embed(data)
        return FeatureBlock(penultimate, times, detail=TagLogits(self.config.model, self.config.precision, logits))


@register
class MusicnnTags(Musicnn):
    name = "musicnn_tags"
    summary = "musicnn's 50 tag probabilities per 3 s patch (MSD: genres and moods such as happy, sad, chill; MTT)"

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ("musicnn",)

    @property
    def feature_names(self) -> list[str]:
        return self.weights_entry.category_names()

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        found = context.get("musicnn")
        times = patch_times(len(data), self.hop_frames)[1]
        shared = found.detail if found is not None else None
        if (isinstance(shared, TagLogits) and (shared.model, shared.precision) == (self.config.model, self.config.precision)
                and np.array_equal(found.times, times)):
            logits = shared.logits
        else:
            times, _, logits = self.embed(data)
        return FeatureBlock(1.0 / (1.0 + np.exp(-logits.astype(np.float64))), times)
