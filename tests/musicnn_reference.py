"""The original musicnn, run for tests/test_musicnn_reference.py in a TensorFlow environment of its own.

    MVFX_TF_PYTHON musicnn_reference.py MODEL OUT.npz AUDIO.wav [AUDIO.wav ...]

MODEL is MSD_musicnn or MTT_musicnn. The interpreter needs tensorflow-cpu and tf-keras (TF_USE_LEGACY_KERAS=1), librosa
and musicnn installed without its dependencies (docs/extractors.md says how); it never runs inside mvfx's environment.
For each wav (16 kHz mono float32, the samples mvfx decoded) it writes, under the wav's index k:

- ``k/logmel``: musicnn's own ``extractor.batch_data`` as NumPy < 2 evaluated it. Its line ``np.log10(10000 *
  audio_rep + 1)`` takes the float16 mel; NumPy 1's value-based casting computed that product in float32 (10000 needs
  more than float16's range), NumPy 2 keeps float16 and overflows. The mel is handed to batch_data as an array whose
  float16 cast keeps float32 storage, which gives NumPy 1's arithmetic, bit for bit, under NumPy 2;
- ``k/taggram``, ``k/penultimate``: musicnn's graph (``models.define_model``, the checkpoint restored with TF's own
  Saver) on those patches;
- ``k/inf_cells``: per patch, the cells that are inf in batch_data as NumPy 2 runs it, unchanged;
- ``k/taggram_numpy2``: what ``musicnn.extractor.extractor`` itself gives under NumPy 2.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import librosa
import numpy as np
import tensorflow as tf
from musicnn import extractor, models

PATCH_FRAMES = 187


class Float16Storage(np.ndarray):
    """A mel spectrogram whose ``astype(float16)`` rounds to float16 values kept in float32: NumPy 1's result."""

    def astype(self, dtype, *args, **kwargs):
        out = np.asarray(self).astype(dtype, *args, **kwargs)
        return out.astype(np.float32) if np.dtype(dtype) == np.float16 else out


def batch_data(path: str, numpy1: bool) -> np.ndarray:
    """musicnn's ``batch_data`` on ``path``, with NumPy 1's arithmetic for its log when ``numpy1``."""
    melspectrogram = librosa.feature.melspectrogram
    if numpy1:
        librosa.feature.melspectrogram = lambda **kw: melspectrogram(**kw).view(Float16Storage)
    try:
        batch, _ = extractor.batch_data(path, PATCH_FRAMES, PATCH_FRAMES)
    finally:
        librosa.feature.melspectrogram = melspectrogram
    return np.asarray(batch)


def main() -> None:
    model, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits, *_, penultimate = models.define_model(x, is_training, model, 50)
        taggram = tf.nn.sigmoid(logits)
    session = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(session, os.path.join(os.path.dirname(models.__file__), model, ""))
    results = {}
    for k, path in enumerate(paths):
        logmel = batch_data(path, numpy1=True)
        tags, embedding = session.run([taggram, penultimate], {x: logmel, is_training: False})
        results |= {f"{k}/logmel": logmel, f"{k}/taggram": tags, f"{k}/penultimate": embedding,
                    f"{k}/inf_cells": np.isinf(batch_data(path, numpy1=False)).sum(axis=(1, 2))}
    for k, path in enumerate(paths):  # musicnn's own extractor builds its graph anew (after the one above is used)
        results[f"{k}/taggram_numpy2"] = extractor.extractor(path, model=model, extract_features=False)[0]
    np.savez(out, **results)


if __name__ == "__main__":
    main()
