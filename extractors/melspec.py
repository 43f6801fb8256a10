"""librosa's power mel spectrogram (Slaney mel scale and filterbank, periodic Hann window), in numpy alone.

The operations and precisions of ``librosa.feature.melspectrogram(center=False)``: a float64 windowed FFT stored
as complex64, its float32 power, and a float32 filterbank normalised to equal area (Slaney), built in float64.
``tests/test_musicnn.py`` holds the two equal bit for bit on real music. It spares an extractor librosa's import,
which takes about 4 s here (scipy.signal, numba).
"""
from __future__ import annotations

import functools

import numpy as np

F_SP = 200.0 / 3  # Slaney's mel scale: linear below 1 kHz (15 mels), logarithmic above
MIN_LOG_HZ = 1000.0
MIN_LOG_MEL = MIN_LOG_HZ / F_SP
LOG_STEP = np.log(6.4) / 27.0
FFT_BLOCK = 2048  # frames transformed at once (16 MB of float64 at 512 points)


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    mel = hz / F_SP
    above = hz >= MIN_LOG_HZ
    mel[above] = MIN_LOG_MEL + np.log(hz[above] / MIN_LOG_HZ) / LOG_STEP
    return mel


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    hz = F_SP * mel
    above = mel >= MIN_LOG_MEL
    hz[above] = MIN_LOG_HZ * np.exp(LOG_STEP * (mel[above] - MIN_LOG_MEL))
    return hz


@functools.cache
def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] float32 triangular filters from 0 Hz to Nyquist, each scaled to unit area."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array([0.0]))[0], hz_to_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - bins[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@functools.cache
def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` points (float64), as an FFT analysis window."""
    window = 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n + 1))[:n]
    window.setflags(write=False)
    return window


def power_mel(signal: np.ndarray, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> np.ndarray:
    """[frames, n_mels] float32 mel power of the frames ``signal[k * hop : k * hop + n_fft]`` (no padding).

    The FFT runs in blocks of frames (the float64 ones of a ten-minute clip would take 300 MB at once); the power
    spectrum, about the size of the signal, is then multiplied by the filterbank in one product, as librosa does:
    BLAS sums a column in an order that depends on how many columns the product has.
    """
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(signal, np.float32), n_fft)[::hop]
    power = np.empty((len(frames), n_fft // 2 + 1), np.float32)
    for a in range(0, len(frames), FFT_BLOCK):
        spectrum = np.fft.rfft(frames[a : a + FFT_BLOCK] * hann(n_fft), axis=1).astype(np.complex64)
        power[a : a + FFT_BLOCK] = np.abs(spectrum) ** 2.0
    return (slaney_filterbank(sample_rate, n_fft, n_mels) @ power.T).T  # librosa's product, in its order
