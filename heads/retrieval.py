"""Using a trained correspondence model: embed a store's clips, rank one modality for a query clip, export embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mvfx.heads.data.dataset import clip_level_features
from mvfx.heads.models.correspond import CorrespondenceModel, CorrespondHead
from mvfx.heads.saved import load_head
from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

SIDES = ("video", "music")


@dataclass(frozen=True)
class Ranked:
    clip_id: str
    score: float
    emotion: str


def correspondence_head(folder: str) -> CorrespondHead:
    """The correspondence model saved in a run folder of `mvfx train correspond`."""
    head = load_head(folder)
    if not isinstance(head, CorrespondHead):
        raise MvfxError(f"{folder}: a {head.kind} model, not a correspondence model (`mvfx train correspond`)")
    return head


def embed_store(store: FeatureStore, head: CorrespondHead) -> dict[str, dict[str, np.ndarray]]:
    """{"video": {clip: unit vector}, "music": {...}} for every clip of the store with that modality's features."""
    out = {}
    for side, extractor in (("video", head.video_features), ("music", head.music_features)):
        clips = store.clip_ids(extractor)
        z = head.embed_side(side, clip_level_features(store, extractor, clips)) if clips else np.zeros((0, head.embed), np.float32)
        out[side] = dict(zip(clips, z))
    return out


def other_side(side: str) -> str:
    return "music" if side == "video" else "video"


def rank(model: CorrespondenceModel, embeddings: dict[str, dict[str, np.ndarray]], query: str, side: str,
         top: int, labels: dict[str, str]) -> list[Ranked]:
    """The ``top`` clips whose other modality fits ``query``'s ``side`` best, by the model's own score
    (cosine similarity for retrieval models, P(match) for match classifiers)."""
    other = other_side(side)
    if query not in embeddings[side]:
        raise MvfxError(f"clip {query!r} has no {side} features in this store")
    names = list(embeddings[other])
    query_z = torch.as_tensor(embeddings[side][query])[None]
    gallery_z = torch.as_tensor(np.stack([embeddings[other][c] for c in names]))
    with torch.no_grad():
        scores = model.pair_scores(query_z, gallery_z) if side == "video" else model.pair_scores(gallery_z, query_z).T
    scores = scores[0].numpy()
    return [Ranked(names[i], float(scores[i]), labels.get(names[i], "?")) for i in np.argsort(-scores, kind="stable")[:top]]


def embedding_arrays(embeddings: dict[str, dict[str, np.ndarray]], dim: int) -> dict[str, np.ndarray]:
    """``{side}_clip_ids`` and ``{side}_embeddings`` arrays per modality, ready for ``np.savez``."""
    arrays = {}
    for side, by_clip in embeddings.items():
        arrays[f"{side}_clip_ids"] = np.array(list(by_clip), dtype=str)
        arrays[f"{side}_embeddings"] = (np.stack(list(by_clip.values())).astype(np.float32) if by_clip
                                        else np.zeros((0, dim), np.float32))
    return arrays
