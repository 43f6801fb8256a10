"""`mvfx train mvf` and `mvfx train autoencoder`: a cross-validated MVF classifier (with and without pre-trained
encoders), from a store to a run folder like the fusion classifier's, and the unsupervised autoencoder that
pre-trains its encoders, whose folder is a run folder too (config.json, metrics.json: the reconstruction error)."""
from __future__ import annotations

import time

import numpy as np
from sklearn.base import clone

from mvfx.heads.data.dataset import class_folds
from mvfx.heads.data.labels import class_labels
from mvfx.heads.data.mvf_inputs import MODALITY_FEATURES, check_modalities, load_inputs
from mvfx.heads.metrics import in_columns, mean_std
from mvfx.heads.models.autoencoder import Autoencoder, save_encoders
from mvfx.heads.models.mvf import MvfHead
from mvfx.heads.runs.folder import RunFolder, run_config
from mvfx.heads.runs.out_of_fold import out_of_fold
from mvfx.heads.threads import with_training_threads
from mvfx.stores import open_store


@with_training_threads
def train_mvf(store_path: str, labels: str, head: MvfHead, out: str, folds: int = 5, seed: int = 0, on_fold=None) -> dict:
    """Cross-validate the MVF configuration of ``head`` ("scratch"); with ``head.init_from`` ("pretrained", the main
    model then), also from scratch in the same folds, so the run reports both. Saves the model fitted on every clip."""
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
    configs = {"pretrained" if head.init_from else "scratch": head}
    if head.init_from:
        configs["scratch"] = clone(head).set_params(init_from=None)
    results = [out_of_fold(config, x, known.names, y, classes, splits, [[c] for c in known.clip_ids],
                           lambda model, test, name=name: {name: in_columns(model.predict_proba(test), model.classes_, classes)},
                           name, on_fold and (lambda row, name=name: on_fold(name, row)), lambda model, _: {"epochs": model.epochs_})
               for name, config in configs.items()]
    main = next(iter(configs))
    models = {name: summary for result in results for name, summary in result.models().items()}
    fold_rows = [{**rows[0], "scores": {k: v for row in rows for k, v in row["scores"].items()}} for rows in zip(*(r.folds for r in results))]
    run.class_predictions(known, results[0].tested, results[0].proba[main], models[main]["out_of_fold"], f"MVF {_label(head)}")
    final = run.final_model(head, store, extractors, {"task": "clip classification", "target": "label", "classes": classes}, x, known.names)
    return run.finish("classification", main, models, fold_rows, len(y), classes=classes,
                      chance_accuracy=float(np.bincount(y).max() / len(y)), architectures=head.architectures, mmtm=head.mmtm,
                      se=head.se, parameters=final.parameter_counts())


def _label(head: MvfHead) -> str:
    parts = [f"{m} {a}" for m, a in head.architectures.items()]
    return " + ".join(parts) + (" + MMTM" if head.mmtm else "") + (" + SE" if head.se else "")


@with_training_threads
def train_autoencoder(store_path: str, out: str, autoencoder: Autoencoder, frame_size: int, on_epoch=None) -> dict:
    """Pre-train ``autoencoder`` on every clip of the store that has log-mel + phase and frames (no labels; frames
    resized to ``frame_size``); write the encoders (``save_encoders``), config.json and metrics.json (the last
    epoch's reconstruction MSE, the loss per epoch) to ``out``, and return the metrics."""
    started = time.perf_counter()
    store = open_store(store_path)
    check_modalities(store, ["music", "video"])
    features = [MODALITY_FEATURES["music"], MODALITY_FEATURES["video"]]
    clips = sorted(set(store.clip_ids(features[0])) & set(store.clip_ids(features[1])))
    params = {**autoencoder.get_params(), "frame_size": frame_size}
    run = RunFolder(out, {"model": "autoencoder", **store.reference(), "features": features, "folds": 0, "seed": autoencoder.seed,
                          "params": params, "task": "reconstruction"}, started)
    x = load_inputs(store, clips, ["music", "video"], frame_size)
    fitted = clone(autoencoder).fit(x, on_epoch=on_epoch)
    save_encoders(fitted.model_, out)
    return run.finish("reconstruction", "autoencoder", {"autoencoder": {"aggregate": {"mse": mean_std(fitted.loss_[-1:])}}}, [],
                      len(clips), loss=fitted.loss_, parameters=fitted.parameters_)
