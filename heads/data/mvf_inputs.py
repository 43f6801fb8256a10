"""The MVF networks' inputs, read from what a store cached: one fixed-size array per clip and modality.

- music: ``logmel_phase`` rows [T, 2 x 128] -> [2, 128, music_frames] (the centre 256 STFT frames, 5.9 s, by default;
  shorter clips are zero-padded);
- video: ``frames`` rows -> [3, N, S, S] uint8, resized to ``frame_size`` (64 by default, for CPUs; the cache
  keeps 112);
- face: ``face_crops`` rows -> [1, N, 48, 48] uint8; a clip without a face gets blank crops.

``load_inputs`` stacks them for training (``MvfHead.fit``); ``MvfHead.predict_clips`` reads batches of clips with
``read_inputs`` through the store its ``ClipReader`` holds.
"""
from __future__ import annotations

import warnings
from collections import Counter

import cv2
import numpy as np

from mvfx.media.errors import MvfxError, MvfxWarning
from mvfx.stores.base import FeatureStore

MODALITY_FEATURES = {"music": "logmel_phase", "video": "frames", "face": "face_crops"}
MUSIC_FRAMES = 256


def _music(values: np.ndarray, frames: int = MUSIC_FRAMES) -> np.ndarray:
    """[T, 256] rows -> [2, 128, frames]: the centre ``frames`` STFT frames, zero-padded when shorter."""
    spec = values.reshape(len(values), 2, -1).transpose(1, 2, 0).astype(np.float32)
    out = np.zeros((*spec.shape[:2], frames), np.float32)
    start = max((spec.shape[2] - frames) // 2, 0)
    piece = spec[:, :, start : start + frames]
    out[:, :, : piece.shape[2]] = piece
    return out


def _images(values: np.ndarray, shape: tuple[int, ...], size: int) -> np.ndarray:
    """[N, flat] uint8 rows of frames (H, W, C) or grey crops (H, W) -> [C, N, size, size] uint8."""
    frames = values.astype(np.uint8).reshape(len(values), *shape)
    resized = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) if f.shape[0] != size else f for f in frames]
    stack = np.stack(resized)
    return stack[None] if stack.ndim == 3 else stack.transpose(3, 0, 1, 2)


def clip_inputs(blocks: dict[str, np.ndarray], shapes: dict[str, tuple], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES, n_faces: int = 16) -> dict[str, np.ndarray]:
    """One clip's network inputs from its stored rows (``blocks``: extractor -> values).

    A clip in which no face was found (``face_crops`` stored zero crops) gets ``n_faces`` blank crops: its face
    branch sees zeros, the same for every faceless clip, and the music and video branches decide.
    """
    out = {}
    for m in modalities:
        values = blocks[MODALITY_FEATURES[m]]
        if m == "face" and len(values) == 0:
            out[m] = np.zeros((1, n_faces, *shapes[m][:2]), np.uint8)
        elif m == "music":
            out[m] = _music(values, music_frames)
        else:
            out[m] = _images(values, shapes[m], frame_size if m == "video" else shapes[m][0])
    return out


def load_inputs(store: FeatureStore, clip_ids: list[str], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES) -> dict[str, np.ndarray]:
    """Stacked inputs of every clip: modality -> [N, ...] (video and faces stay uint8)."""
    inputs, faceless = read_inputs(store, clip_ids, modalities, frame_size, music_frames)
    warn_faceless(store, faceless, len(clip_ids))
    return inputs


def warn_faceless(store: FeatureStore, faceless: int, n_clips: int) -> None:
    """One warning for all the clips without a face (their face input is blank)."""
    if faceless:
        warnings.warn(f"{store.location}: {faceless} of {n_clips} clips have no face; their face input is blank "
                      "(zero) crops", MvfxWarning, stacklevel=3)


def read_inputs(store: FeatureStore, clip_ids: list[str], modalities: list[str], frame_size: int,
                music_frames: int = MUSIC_FRAMES) -> tuple[dict[str, np.ndarray], int]:
    """``load_inputs`` without its warning: the stacked inputs and how many of the clips have no face."""
    shapes = {m: tuple(store.attrs(MODALITY_FEATURES[m])["value_shape"]) for m in modalities}
    n_faces = store.attrs("face_crops")["config"].get("n_crops", 16) if "face" in modalities else 16
    blocks = [{MODALITY_FEATURES[m]: store.read(MODALITY_FEATURES[m], c)[0] for m in modalities} for c in clip_ids]
    faceless = sum(1 for b in blocks if "face" in modalities and len(b["face_crops"]) == 0)
    per_clip = [clip_inputs(b, shapes, modalities, frame_size, music_frames, n_faces) for b in blocks]
    for m in modalities:  # one clip off is one line naming it, not np.stack's "all input arrays must have the same shape"
        shapes_seen = Counter(p[m].shape for p in per_clip)
        usual = shapes_seen.most_common(1)[0][0] if shapes_seen else None
        odd = [c for c, p in zip(clip_ids, per_clip) if p[m].shape != usual]
        if odd:
            raise MvfxError(f"{store.location}: clip {odd[0]} has a {m} input of shape {per_clip[clip_ids.index(odd[0])][m].shape}, "
                            f"{len(clip_ids) - len(odd)} others {usual} ({len(odd)} clip(s) off); re-extract "
                            f"{MODALITY_FEATURES[m]} for it with the current extractor (`mvfx extract ... -e {MODALITY_FEATURES[m]}`)")
    return {m: np.stack([p[m] for p in per_clip]) for m in modalities}, faceless


def check_modalities(store: FeatureStore, modalities: list[str]) -> None:
    for m in modalities:
        if MODALITY_FEATURES[m] not in store.extractors():
            raise MvfxError(f"{store.location}: the {m} network needs {MODALITY_FEATURES[m]} features; "
                            f"run `mvfx extract ... -e {MODALITY_FEATURES[m]}` first")
