"""Two-channel log-mel magnitude + phase spectrogram (MVED slow-fast audio input).

22050 Hz mono, n_fft 2048, hop 512, 128 mel bins (librosa's Slaney mel
filterbank). Per STFT frame (``center=False``, so row k covers exactly
samples [k*hop, k*hop + n_fft)):
- channel 0: log-mel power in dB, ``10*log10(max(mel @ |S|^2, 1e-10))``,
  absolute (not normalised per clip, so clips stay comparable);
- channel 1: phase angle in radians of the mel-weighted complex spectrum
  ``angle(mel @ S)``, i.e. the phase of each mel band's filter-weighted sum.
Rows are stored flattened to 256 values; ``value_shape`` (2, 128) records
how to unflatten them. A clip shorter than n_fft is zero-padded to one frame.
The spectrum is computed in blocks of frames (``FRAMES_PER_BLOCK``), so a
ten-minute clip needs 8 MB of it at a time instead of 210 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mvfx.extractors.base import Config, Extractor, FeatureBlock, TimeGrid, option, single_threaded_blas
from mvfx.extractors.registry import register
from mvfx.media.decode import AudioSpec
from mvfx.media.probe import ClipInfo

FRAMES_PER_BLOCK = 1024  # STFT frames computed at once (11.9 s at 22.05 kHz, 8 MB of complex spectrum)


@dataclass(frozen=True)
class LogMelPhaseConfig(Config):
    sample_rate: int = option(22050, minimum=8000)
    n_fft: int = option(2048, minimum=16)
    hop_length: int = option(512, minimum=1)
    n_mels: int = option(128, minimum=1)


@register
class LogMelPhase(Extractor):
    name = "logmel_phase"
    version = "2"  # 2: the spectrum in blocks of frames; values differ from 1 by float32 summation order (< 1e-5 dB)
    modality = "audio"
    libraries = ("librosa",)
    summary = "2-channel log-mel (dB) + mel-band phase, 128 bins, n_fft 2048, hop 512 @ 22.05 kHz"
    config_class = LogMelPhaseConfig

    def setup(self, device: str = "cpu", random_weights: bool = False) -> None:
        import librosa

        super().setup(device, random_weights)
        c = self.config
        self.mel_basis = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels).astype(np.float32)

    @property
    def input(self) -> AudioSpec:
        return AudioSpec(self.config.sample_rate)

    @property
    def time_grid(self) -> TimeGrid:
        c = self.config
        return TimeGrid("window", c.n_fft / c.sample_rate, c.hop_length / c.sample_rate)

    @property
    def feature_names(self) -> list[str]:
        bins = range(self.config.n_mels)
        return [f"logmel_{i:03d}" for i in bins] + [f"phase_{i:03d}" for i in bins]

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (2, self.config.n_mels)

    def extract(self, data: np.ndarray, info: ClipInfo, context: dict) -> FeatureBlock:
        c = self.config
        if len(data) < c.n_fft:
            data = np.pad(data, (0, c.n_fft - len(data)))
        n_frames = 1 + (len(data) - c.n_fft) // c.hop_length
        values = np.concatenate([self._frames(data, k, min(k + FRAMES_PER_BLOCK, n_frames))
                                 for k in range(0, n_frames, FRAMES_PER_BLOCK)])
        starts = np.arange(n_frames) * c.hop_length / c.sample_rate
        times = np.stack([starts, starts + c.n_fft / c.sample_rate], axis=1)
        return FeatureBlock(values, times)

    def _frames(self, data: np.ndarray, first: int, stop: int) -> np.ndarray:
        """Rows of STFT frames [first, stop): computed from just the samples they cover, so the complex
        spectrogram of a long clip is never held whole (frames are independent; the result is the same)."""
        import librosa

        c = self.config
        piece = data[first * c.hop_length : (stop - 1) * c.hop_length + c.n_fft]
        spec = librosa.stft(piece, n_fft=c.n_fft, hop_length=c.hop_length, center=False)  # [F, T] complex
        with single_threaded_blas():  # the same sums on every executor (see single_threaded_blas)
            mel_complex = self.mel_basis @ spec
            mel_power = self.mel_basis @ (np.abs(spec) ** 2)
        log_mel = 10.0 * np.log10(np.maximum(mel_power, 1e-10))
        return np.concatenate([log_mel.T, np.angle(mel_complex).T], axis=1).astype(np.float32)
