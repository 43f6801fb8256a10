"""Models and stores saved by mvfx before this round's changes (heads split into models/data/runs, store format 2,
the saved-model format out of the estimator) still load and predict exactly what they predicted then.

tests/fixtures/models_before/ holds, written by 47804f0: the model/ folders of `make demo`'s fusion and LASSO
runs, a format-1 store of the six-clip test demo corpus (colour, emobase), and the predictions.csv that code wrote
for that store with each model; written by e5f69aa (model format 1, whose LSTM branches were one multi-layer
nn.LSTM), a small late-fusion LSTM fitted on that store's clips (annotations of the same corpus) with its
predictions; and written by f583ba1 (model format 2, before the saved format left ``heads/estimator.py``): a small
correspondence model (classify, with emotion branches) fitted on every video/music pair of that store's colour and
emobase clips, and a small MVF network (music A2 + video A2 + MMTM) fitted on ``mvf_inputs.zarr`` (log-mel + phase
and 32-pixel frames of six 2-second demo clips), each with its predictions."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mvfx.heads.predict import predict_store
from mvfx.heads.saved import load_head
from mvfx.stores import open_store

BEFORE = Path(__file__).parent / "fixtures" / "models_before"
STORES = {"fusion": "demo_v1.zarr", "lasso_emobase": "demo_v1.zarr", "lstm_late": "demo_v1.zarr", "correspond": "demo_v1.zarr",
          "mvf": "mvf_inputs.zarr"}


@pytest.mark.parametrize("run", sorted(STORES))
def test_a_model_saved_before_predicts_what_it_predicted_then(run, tmp_path):
    store = tmp_path / STORES[run]
    shutil.copytree(BEFORE / STORES[run], store)
    assert open_store(store).store_attrs()["format_version"] == (1 if STORES[run] == "demo_v1.zarr" else 2)
    predict_store(load_head(BEFORE / run), open_store(store), tmp_path / "out", max_timelines=0)
    got = pd.read_csv(tmp_path / "out" / "predictions.csv")
    expected = pd.read_csv(BEFORE / run / "expected_predictions.csv")
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-6, atol=1e-9)
