"""Every metric against scikit-learn / scipy (or its defining formula) on random inputs."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, mean_squared_error, roc_auc_score

from mvfx.heads.metrics import ccc, classification_scores, pearson, regression_scores, rmse


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_references(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=50)
    p = 0.6 * y + rng.normal(scale=0.5, size=50) + 0.2
    assert rmse(y, p) == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert pearson(y, p) == pytest.approx(pearsonr(y, p).statistic)
    # Lin (1989): 2 cov / (var_y + var_p + (mean_y - mean_p)^2), population moments
    expected = 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)
    assert ccc(y, p) == pytest.approx(expected)
    assert regression_scores(y, p) == {"rmse": rmse(y, p), "pearson": pearson(y, p), "ccc": ccc(y, p)}


@pytest.mark.parametrize("n_classes, seed", [(2, 0), (2, 1), (3, 2), (6, 3)])
def test_classification_metrics_match_scikit_learn(n_classes, seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, 80)])
    logits = rng.normal(size=(len(y), n_classes)) + 1.5 * np.eye(n_classes)[y] * rng.random((len(y), 1))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    scores = classification_scores(y, proba, [f"c{i}" for i in range(n_classes)])
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert scores["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    if n_classes == 2:
        assert scores["roc_auc"] == pytest.approx(roc_auc_score(y, proba[:, 1]))
    else:
        assert scores["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert scores["confusion"] == confusion_matrix(y, pred).tolist()


def test_binary_macro_f1_is_the_mean_of_both_classes():
    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 0, 1, 1, 0])
    proba = np.eye(2)[pred] * 0.8 + 0.1
    f1_zero, f1_one = 6 / 8, 2 / 4  # class 0: P 3/4, R 3/4; class 1: P 1/2, R 1/2
    assert classification_scores(y, proba, ["a", "b"])["f1"] == pytest.approx((f1_zero + f1_one) / 2)


def test_a_metric_undefined_in_some_folds_says_in_how_many_it_is_defined():
    """An 81-clip LASSO printed "r -0.328 ± 0.000" from 1 fold of 5 (constant predictions leave r undefined)."""
    from mvfx.heads.metrics import mean_std, spread

    stat = mean_std([float("nan"), -0.328, float("nan"), float("nan"), float("nan")])
    assert (stat["defined"], stat["folds"]) == (1, 5)
    assert spread(stat) == "-0.328 ± 0.000 (in 1 of 5 folds)"
    assert spread(mean_std([0.5, 0.3])) == "0.400 ± 0.100"
    assert spread(mean_std([float("nan")] * 3)) == "undefined" and spread(None) == "-"
