"""How the features a head reads were made, recorded when it is trained and checked before it predicts.

A head trained on one store must not silently predict from features made another way: another extractor version
or configuration, or random weights against a model trained on real ones (and the other way round).
``feature_provenance`` takes what the training store recorded (saved in model.json, see ``saved``);
``check_features`` refuses, in one line, a store whose features differ from it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable

from mvfx.heads.estimator import Head
from mvfx.media.errors import MvfxError
from mvfx.stores.base import FeatureStore

PROVENANCE_KEYS = ("extractor", "version", "config", "weights", "dim")


def feature_provenance(store: FeatureStore, extractors: Iterable[str]) -> dict[str, dict]:
    """What the store recorded about how each feature set was made (the part that must match at prediction)."""
    return {e: {k: store.attrs(e).get(k) for k in PROVENANCE_KEYS} for e in extractors}


def with_provenance(head: Head, store: FeatureStore, extractors: Iterable[str]) -> Head:
    """``head``, with where its training features came from recorded (``provenance_``: saved with the model,
    checked at prediction)."""
    head.provenance_ = feature_provenance(store, extractors)
    return head


def check_features(expected: dict[str, dict], store: FeatureStore, where: str) -> None:
    """Raise one line when ``store``'s features were made differently from those a model was trained on."""
    for extractor, want in expected.items():
        if extractor not in store.extractors():
            raise MvfxError(f"{where}: no {extractor} features (the model reads {', '.join(expected)})")
        have = feature_provenance(store, [extractor])[extractor]
        if have["weights"] == "simulated":
            raise MvfxError(f"{where}: {extractor} rows come from the simulated GPU (--device sim): placeholders, not "
                            "features; extract them again with --device cpu or cuda")
        for key in PROVENANCE_KEYS:
            if have[key] != want[key]:
                if key == "weights" and "random" in (have[key], want[key]):
                    made = "random" if have[key] == "random" else "real"
                    raise MvfxError(f"{where}: {extractor} features come from {made} weights; the model was trained on "
                                    f"{'random' if want[key] == 'random' else 'real'} ones")
                raise MvfxError(f"{where}: {extractor} {key} is {json.dumps(have[key])[:120]}; "
                                f"the model was trained with {json.dumps(want[key])[:120]}")
