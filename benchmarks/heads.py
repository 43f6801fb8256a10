"""Head training throughput: samples per second for each head, on one thread (the heads' default).

A sample is one labelled time step (LASSO, LSTM), one clip (fusion) or one
music-video pair (correspondence), counted once per epoch; every torch head
runs a fixed number of epochs (early stopping off) so runs compare. The data
are a demo corpus's emobase + colour features (36 clips of 10 s).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from mvfx.heads.data.dataset import build, clip_level_features, pretrain_targets
from mvfx.heads.data.labels import read_class_labels, read_labels
from mvfx.heads.data.pairs import build_pairs, load_pairs
from mvfx.heads.models.correspond import CorrespondHead
from mvfx.heads.models.fusion import FusionHead
from mvfx.heads.models.lasso import LassoHead
from mvfx.heads.models.lstm import LstmHead
from mvfx.heads.threads import limited_threads
from mvfx.pipeline.demo_corpus import write_demo_corpus
from mvfx.pipeline.run import run_extract
from mvfx.stores import open_store

EPOCHS = 20


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_heads(results: dict, work: Path) -> None:
    root = work / "heads"
    if not (root / "s.zarr").exists():
        shutil.rmtree(root, ignore_errors=True)
        write_demo_corpus(root / "corpus", n_clips=36, seconds=10.0, seed=0)
        assert run_extract(str(root / "corpus"), str(root / "s.zarr"), ["emobase", "colour"]).ok
    store = open_store(root / "s.zarr")
    clips = build(store, ["emobase", "colour"], read_labels(root / "corpus" / "annotations.csv", "arousal"))
    steps = sum(len(c.times) for c in clips)
    music = {"emobase": read_labels(root / "corpus" / "annotations_music.csv", "arousal")}
    labels = read_class_labels(root / "corpus" / "labels.csv")
    clip_x = {e: clip_level_features(store, e, labels["clip_id"].tolist()) for e in ("emobase", "colour")}
    build_pairs(labels.drop(columns="split")).to_csv(root / "pairs.csv", index=False)
    pairs = load_pairs(store, root / "pairs.csv", "colour", "emobase")
    fixed = {"max_epochs": EPOCHS, "patience": EPOCHS}
    runs = {
        "lasso (emobase)": (steps, lambda: LassoHead(features=["emobase"]).fit(clips)),
        "lstm, MuVi recipe (emobase, 2 x 256)": (steps * EPOCHS, lambda: LstmHead(features=["emobase"], **fixed).fit(clips)),
        "lstm pair (emobase+colour, 2 x 256)": (steps * EPOCHS * 3, lambda: LstmHead(
            features=["emobase", "colour"], fusion="pair", **fixed).fit(clips, modality_targets=pretrain_targets(clips, music))),
        "fusion ensemble (emobase+colour, colour)": (len(labels) * EPOCHS * 2, lambda: FusionHead(
            feature_sets=[["emobase", "colour"], ["colour"]], **fixed).fit(clip_x, labels["label"].to_numpy())),
        "correspondence (colour / emobase)": (len(pairs.y) * EPOCHS, lambda: CorrespondHead(
            video_features="colour", music_features="emobase", **fixed).fit(pairs.x, pairs.y)),
    }
    rows = {}
    with limited_threads(1):
        for name, (samples, fit) in runs.items():
            seconds = _seconds(fit)
            rows[name] = {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds}
            print(name, f"{samples / seconds:.0f} samples/s", flush=True)
    results["heads"] = {"epochs": EPOCHS, "time_steps": steps, "clips": len(labels), "pairs": len(pairs.y), "rows": rows}


def markdown(heads: dict) -> list[str]:
    lines = ["", f"| head training (1 thread; {heads['clips']} clips, {heads['time_steps']} labelled steps, {heads['pairs']} pairs; "
             f"{heads['epochs']} epochs) | samples/s | seconds |", "|---|---|---|"]
    for name, row in heads["rows"].items():
        lines.append(f"| {name} | {row['samples_per_s']:.0f} | {row['seconds']:.1f} |")
    return lines
