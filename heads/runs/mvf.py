"""`mvfx train mvf` and `mvfx train autoencoder`: a cross-validated MVF classifier (with and without pre-trained
encoders), from a store to a run folder like the fusion classifier's, and the unsupervised autoencoder that
pre-trains its encoders."""
from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone

from mvfx.heads.data.dataset import class_folds
from mvfx.heads.data.labels import ClassLabels, class_labels
from mvfx.heads.data.mvf_inputs import MODALITY_FEATURES, check_modalities, load_inputs
from mvfx.heads.estimator import cross_validate, take
from mvfx.heads.metrics import class_summary, classification_scores, in_columns
from mvfx.heads.models.autoencoder import pretrain_autoencoder, save_encoders
from mvfx.heads.models.mvf import MvfHead
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


def _scores(head: MvfHead, x: dict, known: ClassLabels, splits: list, on_fold) -> tuple[dict, np.ndarray]:
    """Out-of-fold probabilities and per-fold scores of one configuration."""
    y, classes = known.codes, known.classes
    oof, folds, tested = np.zeros((len(y), len(classes))), [], np.zeros(len(y), bool)
    for fold, model, test in cross_validate(head, x, known.names, splits):
        oof[test] = in_columns(model.predict_proba(take(x, test)), model.classes_, classes)
        tested[test] = True
        folds.append(classification_scores(y[test], oof[test], classes) | {"epochs": model.epochs_})
        if on_fold:
            on_fold({"fold": fold, **folds[-1]})
    return class_summary(folds, y[tested], oof[tested], classes) | {"folds": folds}, oof


@with_training_threads
def train_mvf(store_path: str, labels: str, head: MvfHead, out: str, folds: int = 5, seed: int = 0, on_fold=None) -> dict:
    """Cross-validate the MVF configuration of ``head``; with ``head.init_from``, also from scratch, so the run
    reports both. Saves the model fitted on every clip."""
    started = time.perf_counter()
    store = open_store(store_path)
    modalities = list(head.architectures)
    check_modalities(store, modalities)
    extractors = [MODALITY_FEATURES[m] for m in modalities]
    known = class_labels(labels, store, extractors)
    classes, y = known.classes, known.codes
    x = load_inputs(store, known.clip_ids, modalities, head.frame_size, head.music_frames)
    run = RunFolder(out, run_config(head, store, extractors, folds, seed, labels=str(labels), task="emotion class"), started)
    splits = class_folds(known.names, None, folds, seed)
    runs = {"pretrained" if head.init_from else "scratch": head}
    if head.init_from:
        runs["scratch"] = clone(head).set_params(init_from=None)
    results, oof = {}, {}
    for name, config in runs.items():
        results[name], oof[name] = _scores(config, x, known, splits, on_fold and (lambda r, name=name: on_fold(name, r)))
    main = next(iter(runs))
    run.class_predictions(known, np.ones(len(y), bool), oof[main], results[main]["pooled"], f"MVF {_label(head)}")
    final = run.final_model(head, store, extractors, {"task": "clip classification", "target": "label", "classes": classes}, x, known.names)
    return run.finish({"classes": classes, "main": main, "n_clips": len(y), "chance_accuracy": float(np.bincount(y).max() / len(y)),
                       "architectures": head.architectures, "mmtm": head.mmtm, "se": head.se, "parameters": final.parameter_counts(),
                       **results[main], "runs": results})


def _label(head: MvfHead) -> str:
    parts = [f"{m} {a}" for m, a in head.architectures.items()]
    return " + ".join(parts) + (" + MMTM" if head.mmtm else "") + (" + SE" if head.se else "")


@with_training_threads
def train_autoencoder(store_path: str, out: str, music: str = "A0", video: str = "A3", mmtm: bool = True, se: bool = False,
                      frame_size: int = 64, epochs: int = 20, lr: float = 1e-3, batch_size: int = 8, device: str = "cpu",
                      seed: int = 0, on_epoch=None) -> dict:
    """Pre-train on every clip of the store that has log-mel + phase and frames (no labels); write the encoders and
    autoencoder.json (loss per epoch, the store, seconds) to ``out``."""
    started = time.perf_counter()
    store = open_store(store_path)
    check_modalities(store, ["music", "video"])
    clips = sorted(set(store.clip_ids("logmel_phase")) & set(store.clip_ids("frames")))
    x = load_inputs(store, clips, ["music", "video"], frame_size)
    model, summary = pretrain_autoencoder(x, music=music, video=video, mmtm=mmtm, se=se, lr=lr, batch_size=batch_size, epochs=epochs,
                                          device=device, seed=seed, on_epoch=on_epoch)
    summary |= {**store.reference(), "frame_size": frame_size, "seconds": time.perf_counter() - started}
    save_encoders(model, summary, out)
    return summary
