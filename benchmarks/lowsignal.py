"""Fusion members against a standardised logistic regression on small, low-signal corpora (no decoding).

Each synthetic corpus holds ``n_clips`` clips in 6 balanced classes and one feature set per member, shaped like
the real ones' weak cues: a few dimensions whose class means differ a little, and hundreds of pure-noise
dimensions. Per seed: stratified 5-fold; per fold, one ``FusionHead`` (one member per feature set) and, per
member, the baseline: scikit-learn's StandardScaler + LogisticRegression, at each C of ``LOGISTIC_C`` and with C
chosen by inner 3-fold log-loss on the training rows. Prints and returns the mean accuracy over seeds and folds.

    python -m benchmarks.lowsignal
"""
from __future__ import annotations

import numpy as np

from mvfx.heads.models.fusion import LOGISTIC_C, FusionHead

# member -> (informative dims, noise dims, class-mean spread of the informative dims, in noise std)
MEMBERS = {"emobase": (6, 400, 1.4), "colour": (3, 150, 1.0), "face_expression": (2, 250, 1.0)}
N_CLASSES = 6


def corpus(seed: int, n_clips: int = 120, noise_scale: float = 1.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(features per member [N, D], class names [N]): weak class cues in a few dims, noise in the rest."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.arange(n_clips) % N_CLASSES)
    x = {}
    for name, (informative, noise, spread) in MEMBERS.items():
        means = rng.normal(0.0, spread, size=(N_CLASSES, informative))
        signal = means[codes] + rng.normal(size=(n_clips, informative))
        x[name] = np.concatenate([signal, rng.normal(size=(n_clips, round(noise * noise_scale)))], axis=1).astype(np.float32)
    return x, np.array([f"class{c}" for c in codes])


def baseline(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Predicted classes of the standardised logistic regression at each C, and with C chosen by inner CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for c in LOGISTIC_C:
        out[f"C={c:g}"] = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x_train, y_train).predict(x_test)
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), {"logisticregression__C": list(LOGISTIC_C)},
                          scoring="neg_log_loss", cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    out["C by inner CV"] = search.fit(x_train, y_train).predict(x_test)
    return out


def run(seeds: tuple[int, ...] = (0, 1, 2, 3, 4), n_clips: int = 120, noise_scale: float = 1.0, member_model: str = "auto",
        folds: int = 5) -> dict[str, dict[str, float]]:
    """{member: {"fusion member": accuracy, "C=...": accuracy, "C by inner CV": accuracy}}, means over seeds and folds."""
    from sklearn.model_selection import StratifiedKFold

    scores: dict[str, dict[str, list[float]]] = {m: {} for m in MEMBERS}
    for seed in seeds:
        x, y = corpus(seed, n_clips, noise_scale)
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y):
            head = FusionHead(feature_sets=[[m] for m in MEMBERS], member_model=member_model, seed=seed)
            head.fit({m: f[train] for m, f in x.items()}, y[train])
            probas = head.member_proba({m: f[test] for m, f in x.items()})
            for (member, features), proba, chosen in zip(x.items(), probas, head.members_chosen_):
                predicted = {"fusion member": np.array(head.classes_)[proba.argmax(axis=1)],
                             **baseline(features[train], y[train], features[test], seed)}
                for name, p in predicted.items():
                    scores[member].setdefault(name, []).append(float(np.mean(p == y[test])))
                scores[member].setdefault(f"chose {chosen}", []).append(1.0)
    return {m: {k: (float(np.mean(v)) if not k.startswith("chose") else float(len(v))) for k, v in s.items()} for m, s in scores.items()}


def main() -> None:
    for member_model in ("auto", "mlp"):
        result = run(member_model=member_model)
        print(f"member_model={member_model}: mean accuracy over 5 seeds x 5 folds, 120 clips, 6 classes (chance 0.167)")
        for member, row in result.items():
            print(f"  {member:16s} " + "  ".join(f"{k} {v:.3f}" if not k.startswith("chose") else f"{k}: {v:.0f}x" for k, v in row.items()))


if __name__ == "__main__":
    main()
