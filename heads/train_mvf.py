"""Runs of the MVF networks: a cross-validated classifier (with and without pre-trained encoders) and the
unsupervised autoencoder, from a store to a run folder like the fusion classifier's."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone

from mvfx.heads.dataset import matched_clips
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import classification_scores, mean_std
from mvfx.heads.mvf import MODALITY_FEATURES, MvfHead, check_modalities, load_inputs, pretrain_autoencoder
from mvfx.heads.pairs import read_class_labels
from mvfx.heads.threads import with_training_threads
from mvfx.heads.train_classify import CLASS_METRICS, _folds, _in_columns, write_class_run
from mvfx.stores import open_store


def _scores(head: MvfHead, x: dict, y: np.ndarray, named: np.ndarray, classes: list[str], splits: list, on_fold) -> tuple[dict, np.ndarray]:
    """Out-of-fold probabilities and per-fold scores of one configuration."""
    oof, folds, tested = np.zeros((len(y), len(classes))), [], np.zeros(len(y), bool)
    for fold, model, test in cross_validate(head, x, named, splits):
        oof[test] = _in_columns(model.predict_proba(take(x, test)), model.classes_, classes)
        tested[test] = True
        folds.append(classification_scores(y[test], oof[test], classes) | {"epochs": model.epochs_})
        if on_fold:
            on_fold({"fold": fold, **folds[-1]})
    return {"aggregate": {m: mean_std([f[m] for f in folds]) for m in CLASS_METRICS},
            "pooled": classification_scores(y[tested], oof[tested], classes), "folds": folds}, oof


@with_training_threads
def train_mvf(store_path: str, labels: str, head: MvfHead, out: str, folds: int = 5, seed: int = 0, on_fold=None) -> dict:
    """Cross-validate the MVF configuration of ``head``; with ``head.init_from``, also from scratch, so the run
    reports both. Saves the model fitted on every clip."""
    started = time.perf_counter()
    store = open_store(store_path)
    modalities = list(head.architectures)
    check_modalities(store, modalities)
    extractors = [MODALITY_FEATURES[m] for m in modalities]
    table = read_class_labels(labels)
    have = set.intersection(*(set(store.clip_ids(e)) for e in extractors))
    keep = matched_clips(table["clip_id"].tolist(), have, ", ".join(extractors))
    table = table[table["clip_id"].isin(keep)].sort_values("clip_id").reset_index(drop=True)
    classes = sorted(table["label"].unique())
    named = table["label"].to_numpy()
    y = np.array([classes.index(label) for label in named])
    x = load_inputs(store, table["clip_id"].tolist(), modalities, head.frame_size, head.music_frames)
    splits = _folds(named, None, folds, seed)
    runs = {"pretrained" if head.init_from else "scratch": head}
    if head.init_from:
        runs["scratch"] = clone(head).set_params(init_from=None)
    results, oof = {}, {}
    for name, config in runs.items():
        results[name], oof[name] = _scores(config, x, y, named, classes, splits, on_fold and (lambda r, name=name: on_fold(name, r)))
    main = next(iter(runs))
    final = clone(head).fit(x, named).with_provenance(store, extractors)
    final.training_ = {"task": "clip classification", "target": "label", "classes": classes}
    metrics = {"classes": classes, "main": main, "n_clips": len(y), "chance_accuracy": float(np.bincount(y).max() / len(y)),
               "architectures": head.architectures, "mmtm": head.mmtm, "se": head.se, "parameters": final.parameter_counts(),
               **results[main], "runs": results}
    config = {"model": "mvf", **store.reference(), "labels": str(labels), "features": extractors, "task": "emotion class",
              "folds": folds, "seed": seed, "params": head.get_params()}
    out_dir = write_class_run(out, config, table, classes, y, np.ones(len(y), bool), oof[main], f"MVF {_label(head)}", results[main]["pooled"])
    final.save(out_dir / "model")
    metrics["seconds"] = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _label(head: MvfHead) -> str:
    parts = [f"{m} {a}" for m, a in head.architectures.items()]
    return " + ".join(parts) + (" + MMTM" if head.mmtm else "") + (" + SE" if head.se else "")


@with_training_threads
def train_autoencoder(store_path: str, out: str, music: str = "A0", video: str = "A3", mmtm: bool = True, se: bool = False,
                      frame_size: int = 64, epochs: int = 20, lr: float = 1e-3, batch_size: int = 8, device: str = "cpu",
                      seed: int = 0, on_epoch=None) -> dict:
    """Pre-train on every clip of the store that has log-mel + phase and frames (no labels)."""
    started = time.perf_counter()
    store = open_store(store_path)
    check_modalities(store, ["music", "video"])
    clips = sorted(set(store.clip_ids("logmel_phase")) & set(store.clip_ids("frames")))
    x = load_inputs(store, clips, ["music", "video"], frame_size)
    summary = pretrain_autoencoder(x, out, music=music, video=video, mmtm=mmtm, se=se, lr=lr, batch_size=batch_size, epochs=epochs,
                                   device=device, seed=seed, on_epoch=on_epoch)
    summary |= {**store.reference(), "frame_size": frame_size, "seconds": time.perf_counter() - started}
    (Path(out) / "autoencoder.json").write_text(json.dumps(summary, indent=2))
    return summary
