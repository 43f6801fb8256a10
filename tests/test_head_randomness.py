"""Heads draw their random numbers from generators of their own: fitting one leaves the process's random state as
it was, and two heads fitted at once (two threads, their steps interleaved) give exactly what each gives alone."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mvfx.heads.data.dataset import ClipData
from mvfx.heads.models.autoencoder import Autoencoder
from mvfx.heads.models.correspond import CorrespondHead
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.models.lstm import LstmHead
from mvfx.heads.models.mvf import MvfHead
from mvfx.heads.threads import limited_threads

RNG = np.random.default_rng(0)
LABELS = np.array(["calm", "sad", "tense"] * 8)
X = {"a": RNG.normal(size=(24, 6)).astype(np.float32) + (LABELS == "sad")[:, None], "b": RNG.normal(size=(24, 3)).astype(np.float32)}
CLIPS = [ClipData(f"c{k}", np.stack([np.arange(10) * 0.5, np.arange(1, 11) * 0.5], axis=1), {"a": RNG.normal(size=(10, 6)).astype(np.float32)},
                  np.tanh(RNG.normal(size=10))) for k in range(12)]
PAIRS = {"video": X["a"], "music": X["b"], "video_label": LABELS, "music_label": LABELS[::-1].copy(), "group": np.arange(24)}
MUSIC = RNG.normal(size=(12, 2, 128, 16)).astype(np.float32)
VIDEO = RNG.integers(0, 255, size=(12, 3, 8, 16, 16), dtype=np.uint8)
FAST = {"lr": 1e-3, "patience": 40}


def _fusion() -> np.ndarray:
    return FusionHead(feature_sets=[["a", "b"]], member_model="mlp", hidden=8, max_epochs=40, **FAST).fit(X, LABELS).predict_proba(X)


def _lstm() -> np.ndarray:
    return np.concatenate(LstmHead(features=["a"], hidden=8, max_epochs=15, **FAST).fit(CLIPS).predict(CLIPS))


def _correspond() -> np.ndarray:
    return CorrespondHead(video_features="a", music_features="b", embed=8, mcb_dim=16, max_epochs=40, **FAST).fit(
        PAIRS, np.arange(24) % 2).predict_proba(PAIRS)


def _mvf() -> np.ndarray:
    return MvfHead(music="A2", max_epochs=2, batch_size=4).fit({"music": MUSIC}, LABELS[:12]).predict_proba({"music": MUSIC})


def _autoencoder() -> np.ndarray:
    return np.array(Autoencoder(music="A2", video="A2", mmtm=False, epochs=2, batch_size=2).fit(
        {"music": MUSIC[:4], "video": VIDEO[:4]}).loss_)


FITS = {"fusion": _fusion, "lstm": _lstm, "correspond": _correspond, "mvf": _mvf, "autoencoder": _autoencoder}


@pytest.fixture(autouse=True)
def one_thread():
    """As `mvfx train` fits heads: on one thread (torch's default thread per core makes these fits many times slower)."""
    with limited_threads(1):
        yield


@pytest.mark.parametrize("name", list(FITS))
def test_fitting_a_head_leaves_the_global_random_state_as_it_was(name):
    torch.manual_seed(123)
    np.random.seed(123)
    before_torch, before_numpy = torch.get_rng_state(), np.random.get_state()[1].copy()
    FITS[name]()
    assert torch.equal(torch.get_rng_state(), before_torch), f"{name} changed torch's global random state"
    assert np.array_equal(np.random.get_state()[1], before_numpy), f"{name} changed numpy's global random state"


def test_two_heads_fitted_at_once_give_exactly_what_each_gives_alone():
    alone = {name: fit() for name, fit in FITS.items()}
    for first, second in (("fusion", "lstm"), ("lstm", "correspond"), ("correspond", "fusion"), ("mvf", "autoencoder")):
        start = threading.Barrier(2)

        def fitted(name: str) -> np.ndarray:
            start.wait()
            return FITS[name]()

        with ThreadPoolExecutor(2) as pool:
            together = dict(zip((first, second), pool.map(fitted, (first, second))))
        for name, result in together.items():
            np.testing.assert_array_equal(result, alone[name], err_msg=f"{name} fitted beside {first if name == second else second}")
