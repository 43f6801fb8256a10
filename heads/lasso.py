"""LASSO baseline: standardise (fit on training clips), alpha by inner grouped CV, report coefficients by name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LassoCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mvfx.heads.dataset import ClipData, stack

TOP_COEFFICIENTS = 25


def fit_lasso(clips: list[ClipData], extractors: list[str], seed: int, inner_folds: int = 5):
    """A standardise + LassoCV pipeline fitted on ``clips``; inner folds are over clips too."""
    x, y, groups = stack(clips, extractors)
    splits = list(GroupKFold(n_splits=min(inner_folds, len(clips))).split(x, y, groups))
    model = make_pipeline(StandardScaler(), LassoCV(cv=splits, alphas=30, max_iter=5000, random_state=seed))
    return model.fit(x, y)


def lasso_fit_predict(extractors: list[str], seed: int, coefs: list[np.ndarray], alphas: list[float]):
    def fit_predict(train: list[ClipData], test: list[ClipData], fold: int) -> dict[str, np.ndarray]:
        model = fit_lasso(train, extractors, seed)
        coefs.append(model[-1].coef_.copy())
        alphas.append(float(model[-1].alpha_))
        return {c.clip_id: model.predict(stack([c], extractors)[0]) for c in test}

    return fit_predict


def feature_names(store, extractors: list[str]) -> list[str]:
    return [f"{e}:{n}" for e in extractors for n in store.attrs(e)["feature_names"]]


def write_lasso_outputs(out: Path, names: list[str], coefs: list[np.ndarray], final_model) -> list[dict]:
    """coefficients.csv/.png (mean ± std over folds, largest |mean| first) and model.npz; returns the top rows."""
    from mvfx.heads.plots import coefficients_plot

    stacked = np.stack(coefs)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    order = np.argsort(-np.abs(mean))
    table = pd.DataFrame({"feature": np.array(names)[order], "coef_mean": mean[order], "coef_std": std[order],
                          "nonzero_folds": (stacked[:, order] != 0).sum(axis=0)})
    table.to_csv(out / "coefficients.csv", index=False)
    top = order[:TOP_COEFFICIENTS]
    coefficients_plot(out / "coefficients.png", [names[i] for i in top], mean[top], std[top])
    scaler, lasso = final_model
    np.savez(out / "model.npz", feature_names=np.array(names), scaler_mean=scaler.mean_, scaler_scale=scaler.scale_,
             coef=lasso.coef_, intercept=lasso.intercept_, alpha=lasso.alpha_)
    (out / "model.json").write_text(json.dumps({"kind": "lasso", "predict": "((x - scaler_mean) / scaler_scale) @ coef + intercept"}))
    return table.head(10).to_dict("records")
