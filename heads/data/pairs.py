"""Matched / mismatched music-video pairs, built the EmoMV way.

Within each split (the labels' ``split`` column, else one split "all"):
1. each class's clips are shuffled (seeded) and cut into two halves, the
   first one rounded up;
2. the first half stays matched: video and music of the same clip;
3. in the second half, clips of two classes that form one of the eight
   allowed emotion pairs swap their music: clip A (class X) and clip B
   (class Y) give video A + music B and video B + music A. Allowed:
   exciting-fear, exciting-tension, exciting-sad, exciting-relaxation,
   fear-sad, fear-relaxation, tension-sad, tension-relaxation; neutral is
   never mismatched, and fear-tension and sad-relaxation (too close) never;
4. second-half clips left without a partner return to matched (partners are
   chosen most-constrained-first, so as few as possible are left over);
5. matched pairs are dropped at random (seeded) until the split has as many
   matched as mismatched pairs.
Each clip thus feeds one matched pair or one swap; the two pairs of a swap
share a ``group`` in the table written.

``load_pairs`` reads such a table back (or one made by hand) with the clip-level features of each pair's two
clips. It does not trust a ``group`` column: training groups are the connected components of the clips the pairs
share (``shared_clip_groups``), so a fold split by group never puts a clip, as video or as music, on both sides.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mvfx.heads.data.dataset import clip_level_features
from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

ALLOWED_MISMATCHES = frozenset(
    frozenset(p)
    for p in [("exciting", "fear"), ("exciting", "tension"), ("exciting", "sad"), ("exciting", "relaxation"),
              ("fear", "sad"), ("fear", "relaxation"), ("tension", "sad"), ("tension", "relaxation")]
)
PAIR_COLUMNS = ["video_clip", "music_clip", "video_label", "music_label", "match", "split", "group"]


def build_pairs(labels: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Pairs table (PAIR_COLUMNS) from a labels table with clip_id, label[, split]."""
    rng = random.Random(seed)
    labels = labels.assign(split=labels.get("split", "all"))
    rows: list[dict] = []
    for split in sorted(labels["split"].astype(str).unique()):
        rows.extend(_split_pairs(labels[labels["split"].astype(str) == split], split, rng, len(rows)))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _split_pairs(labels: pd.DataFrame, split: str, rng: random.Random, group_base: int) -> list[dict]:
    by_class: dict[str, list[str]] = defaultdict(list)
    for clip_id, label in zip(labels["clip_id"].astype(str), labels["label"].astype(str)):
        by_class[label].append(clip_id)
    matched, pool = [], []
    for label in sorted(by_class):
        clips = sorted(by_class[label])
        rng.shuffle(clips)
        half = (len(clips) + 1) // 2
        matched += [(c, label) for c in clips[:half]]
        pool += [(c, label) for c in clips[half:]]
    rng.shuffle(pool)
    swaps, leftover = _swap_partners(pool)
    matched += leftover
    rng.shuffle(matched)
    assert len(matched) >= 2 * len(swaps)  # the first half is rounded up, so matched never run short
    matched = matched[: 2 * len(swaps)]
    rows = []
    group = group_base
    for clip, label in matched:
        rows.append(dict(zip(PAIR_COLUMNS, (clip, clip, label, label, 1, split, group))))
        group += 1
    for (a, la), (b, lb) in swaps:
        rows.append(dict(zip(PAIR_COLUMNS, (a, b, la, lb, 0, split, group))))
        rows.append(dict(zip(PAIR_COLUMNS, (b, a, lb, la, 0, split, group))))
        group += 1
    return rows


def _swap_partners(pool: list[tuple[str, str]]) -> tuple[list, list]:
    """Pair clips of allowed class pairs, leaving as few over as possible.

    The clip with the fewest possible partners goes first and takes a partner
    from the largest allowed class, so scarce classes are not stranded.
    """
    pool = list(pool)
    swaps, leftover = [], []
    while pool:
        counts = defaultdict(int)
        for _, label in pool:
            counts[label] += 1
        options = lambda label: sum(n for other, n in counts.items() if frozenset((label, other)) in ALLOWED_MISMATCHES)  # noqa: E731
        first = min(range(len(pool)), key=lambda i: options(pool[i][1]))
        clip, label = pool.pop(first)
        counts[label] -= 1
        allowed = [other for other in counts if counts[other] and frozenset((label, other)) in ALLOWED_MISMATCHES]
        if not allowed:
            leftover.append((clip, label))
            continue
        best = max(allowed, key=lambda other: counts[other])
        swaps.append(((clip, label), pool.pop(next(i for i, (_, other) in enumerate(pool) if other == best))))
    return swaps, leftover



def shared_clip_groups(video_clips: list[str], music_clips: list[str]) -> np.ndarray:
    """[P] a group per pair: pairs that share a clip, directly or through other pairs, get the same one (the
    connected components of the graph whose nodes are clips and whose edges are pairs). A clip is one node
    whether it gives the video or the music: its two streams come from one recording."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {clip: i for i, clip in enumerate(sorted(set(video_clips) | set(music_clips)))}
    v, m = [index[c] for c in video_clips], [index[c] for c in music_clips]
    _, component = connected_components(coo_matrix((np.ones(len(v)), (v, m)), shape=(len(index), len(index))), directed=False)
    return component[v]


@dataclass
class PairData:
    pairs: pd.DataFrame
    x: dict[str, np.ndarray]  # CorrespondHead's input: video, music, video_label, music_label, group per pair
    y: np.ndarray  # match (0/1)


def load_pairs(store: FeatureStore, pairs_csv: str | Path, video_extractor: str, music_extractor: str) -> PairData:
    """The pairs of ``pairs_csv`` whose clips have their side's features, with those features averaged per clip and
    the pairs grouped by the clips they share (``shared_clip_groups``; a ``group`` column in the file is replaced)."""
    pairs = pd.read_csv(pairs_csv, dtype={"video_clip": str, "music_clip": str})
    missing = [c for c in ("video_clip", "music_clip", "video_label", "music_label", "match") if c not in pairs.columns]
    if missing:
        raise MvfxError(f"{pairs_csv}: missing column(s) {', '.join(missing)}; make pairs with `mvfx pairs build`")
    have_v, have_m = set(store.clip_ids(video_extractor)), set(store.clip_ids(music_extractor))
    pairs = pairs[pairs["video_clip"].isin(have_v) & pairs["music_clip"].isin(have_m)].reset_index(drop=True)
    pairs["group"] = shared_clip_groups(pairs["video_clip"].tolist(), pairs["music_clip"].tolist())
    if pairs["match"].nunique() < 2 or len(pairs) < 10:
        raise MvfxError(f"{pairs_csv}: {len(pairs)} usable pairs (both kinds needed, at least 10) with features in the store")
    x = {"video": clip_level_features(store, video_extractor, pairs["video_clip"].tolist()),
         "music": clip_level_features(store, music_extractor, pairs["music_clip"].tolist()),
         **{k: pairs[k].to_numpy() for k in ("video_label", "music_label", "group")}}
    return PairData(pairs, x, pairs["match"].to_numpy())
