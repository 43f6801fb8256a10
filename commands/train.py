"""`mvfx train ...` and `mvfx pairs build`: fit heads on features already in a store."""
from __future__ import annotations

import click

from mvfx.commands.common import console, fold_progress, parse_assignments, reporting_warnings
from mvfx.heads.report import scores_text


@click.group()
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads to train with (default 1, or $MVFX_THREADS): small heads train fastest on one.")
def train(threads: int | None) -> None:
    """Train heads on features already in a store (no video is decoded again).

    --seed fixes the folds; --init-seed (default: the same) fixes the initial weights,
    so either can be varied alone.
    """
    import os

    if threads:
        os.environ["MVFX_THREADS"] = str(threads)


def _regression_options(fn):
    options = [
        click.argument("store_path", metavar="STORE"),
        click.option("--labels", required=True, help="CSV: clip_id,annotator,time_s,arousal,valence (EWE gold) or clip_id,arousal,valence."),
        click.option("--features", "-f", required=True, help="Comma-separated extractors in the store, e.g. emobase,colour."),
        click.option("--target", default="arousal", show_default=True,
                     help="Label column to predict: arousal, valence, or any numeric clip-level column."),
        click.option("--out", "-o", required=True, help="Run folder for metrics.json, config.json, model and PNGs."),
        click.option("--folds", default=5, show_default=True, help="k-fold over clips (never over time steps of a clip)."),
        click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment."),
        click.option("--where", multiple=True, metavar="COLUMN=VALUE", help="Keep only label rows with this value (e.g. modality=music)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _where(pairs: tuple[str, ...]) -> dict[str, str]:
    return parse_assignments(pairs, "--where", "modality=music")


def _run_training(**kwargs) -> None:
    from mvfx.heads.runs.regression import train_regression

    progress, on_fold = fold_progress(kwargs["folds"], lambda f: f"fold {f['fold']}: CCC {f['ccc']:.3f}")
    with reporting_warnings(), progress:
        metrics = train_regression(on_fold=on_fold, **kwargs)
    agg, ceiling = metrics["models"][metrics["main"]]["aggregate"], metrics["inter_rater_ccc"]
    console.print(
        f"[bold]{kwargs['target']}[/bold] over {metrics['n_clips']} clips, {kwargs['folds']} folds, scored {metrics['grain']}: "
        f"{scores_text(agg)}{_ceiling(ceiling)} in {metrics['seconds']:.0f} s -> {kwargs['out']}"
    )


def _ceiling(ceiling: dict) -> str:
    """The inter-rater CCC, where annotator series exist to compute it."""
    return f" (inter-rater CCC {ceiling['mean']:.3f})" if ceiling["mean"] == ceiling["mean"] else ""


@train.command("lasso")
@_regression_options
def train_lasso(store_path, labels, features, target, out, folds, seed, where) -> None:
    """LASSO regression of valence or arousal per time step (MuVi baseline).

    Features are standardised on the training folds, alpha is chosen by an inner
    cross-validation over clips, and the largest coefficients are reported by name
    (coefficients.csv / .png).
    """
    from mvfx.heads.models.lasso import LassoHead

    _run_training(store_path=store_path, labels=labels, head=LassoHead(features=features.split(","), seed=seed), target=target,
                  out=out, folds=folds, seed=seed, where=_where(where))


@train.command("lstm")
@_regression_options
@click.option("--fusion", type=click.Choice(["none", "early", "late", "pair"]), default="none", show_default=True,
              help="none: one feature set; early: concatenated; late: one LSTM per set + dense; pair: late, pre-trained per modality.")
@click.option("--seq-len", default=4, show_default=True, help="Steps of context (the current one included).")
@click.option("--pretrain-labels", multiple=True, metavar="EXTRACTOR=CSV",
              help="PAIR: each modality's own ratings, e.g. emobase=annotations_music.csv.")
@click.option("--epochs", default=300, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--patience", default=20, show_default=True, help="Epochs without validation improvement before stopping.")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--hidden", default=256, show_default=True, help="LSTM units per layer.")
@click.option("--init-seed", type=int, default=None, help="Seed of the initial weights and batches (default: --seed).")
def train_lstm(store_path, labels, features, target, out, folds, seed, where, fusion, seq_len, pretrain_labels, epochs, patience, lr,
               hidden, init_seed) -> None:
    """LSTM regression (2 x 256, dropout 0.2, tanh) on the previous --seq-len steps, with early/late/PAIR fusion."""
    from mvfx.heads.models.lstm import LstmHead, input_groups

    names = features.split(",")
    input_groups(names, fusion)  # a wrong number of feature sets for the fusion stops here, in one line
    head = LstmHead(features=names, fusion=fusion, seq_len=seq_len, hidden=hidden, max_epochs=epochs, patience=patience, lr=lr,
                    seed=seed if init_seed is None else init_seed)
    _run_training(store_path=store_path, labels=labels, head=head, target=target, out=out, folds=folds, seed=seed,
                  where=_where(where),
                  pretrain_labels=parse_assignments(pretrain_labels, "--pretrain-labels", "emobase=annotations_music.csv"))


@train.command("fusion")
@click.argument("store_path", metavar="STORE")
@click.option("--labels", required=True, help="CSV clip_id,label[,split] (exciting, fear, neutral, relaxation, sad, tension, ...).")
@click.option("--features", "-f", required=True, help="Comma-separated extractors fused by one model, e.g. vggish,colour.")
@click.option("--ensemble", multiple=True, metavar="SET",
              help="Another feature set (comma-separated) whose model joins an ensemble averaging class probabilities.")
@click.option("--out", "-o", required=True, help="Run folder.")
@click.option("--folds", default=6, show_default=True, help="Stratified k-fold over clips.")
@click.option("--use-split", is_flag=True, help="Use the labels' split column (train/val/test) instead of k-fold.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment.")
@click.option("--init-seed", type=int, default=None, help="Seed of the initial weights and batches (default: --seed).")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--epochs", default=400, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--patience", default=30, show_default=True, help="Epochs without validation improvement before stopping.")
@click.option("--hidden", default=64, show_default=True, help="Units of each modality's projection.")
@click.option("--class-weights", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
              help="balanced: weigh each class by n / (classes x its count) in the loss, for skewed label sets.")
@click.option("--member-model", type=click.Choice(["auto", "logistic", "mlp"]), default="auto", show_default=True,
              help="Each member's model: auto = chosen by inner cross-validation on its training rows among logistic "
                   "regression (C 0.01, 0.1, 1) and, with >= 20 clips per class, the network; mlp = the network alone.")
def train_fusion_cmd(store_path, labels, features, ensemble, out, folds, use_split, seed, init_seed, lr, epochs, patience, hidden,
                     class_weights, member_model) -> None:
    """Late-fusion emotion classifier over clip-level features (MVED), optionally an ensemble.

    Writes metrics.json (accuracy, macro F1, one-vs-rest ROC AUC per fold and
    aggregate), confusion.png, roc.png, predictions.csv and model/ (model.json + state.pt) for `mvfx predict`.
    """
    from mvfx.heads.models.fusion import FusionHead
    from mvfx.heads.runs.fusion import train_fusion

    sets = [features.split(",")] + [e.split(",") for e in ensemble]
    head = FusionHead(feature_sets=sets, hidden=hidden, lr=lr, max_epochs=epochs, patience=patience, class_weights=class_weights,
                      seed=seed if init_seed is None else init_seed, member_model=member_model)
    progress, on_fold = fold_progress(1 if use_split else folds, lambda r: f"fold {r['fold']}: accuracy {r['accuracy']:.2f}")
    with reporting_warnings(), progress:
        metrics = train_fusion(store_path, labels, head, out, folds, seed, use_split, on_fold=on_fold)
    for name, model in metrics["models"].items():
        console.print(f"[bold]{name}[/bold]: {scores_text(model['aggregate'])}")
    console.print(f"{metrics['n_clips']} clips, {len(metrics['classes'])} classes (chance {metrics['chance_accuracy']:.3f}) "
                  f"in {metrics['seconds']:.0f} s -> {out}")


@click.group()
def pairs() -> None:
    """Music-video pairs for correspondence training."""


@pairs.command("build")
@click.option("--labels", required=True, help="CSV clip_id,label[,split].")
@click.option("--out", "-o", required=True, help="pairs.csv to write.")
@click.option("--seed", default=0, show_default=True)
def pairs_build(labels: str, out: str, seed: int) -> None:
    """Matched/mismatched pairs the EmoMV way (see heads/data/pairs.py): per class, half the clips stay
    matched; the rest swap music across the eight allowed emotion pairs; balanced per split."""
    from mvfx.heads.data.labels import read_class_labels
    from mvfx.heads.data.pairs import build_pairs

    table = build_pairs(read_class_labels(labels), seed)
    table.to_csv(out, index=False)
    counts = table.groupby(["split", "match"]).size().unstack(fill_value=0)
    for split, row in counts.iterrows():
        console.print(f"{split}: {row.get(1, 0)} matched, {row.get(0, 0)} mismatched")
    console.print(f"wrote {len(table)} pairs to {out}")


@train.command("correspond")
@click.argument("store_path", metavar="STORE")
@click.option("--pairs", "pairs_csv", required=True, help="pairs.csv from `mvfx pairs build`.")
@click.option("--video-features", required=True, help="Extractor for the video tower, e.g. slowfast_r50 or colour.")
@click.option("--music-features", required=True, help="Extractor for the music tower, e.g. vggish or emobase.")
@click.option("--out", "-o", required=True, help="Run folder.")
@click.option("--objective", type=click.Choice(["classify", "retrieve"]), default="classify", show_default=True,
              help="classify: compact bilinear pooling + match softmax; retrieve: contrastive loss on cosine distance.")
@click.option("--emotion-branches", is_flag=True, help="Multi-task: also predict each side's emotion (equal loss weights).")
@click.option("--folds", default=5, show_default=True, help="k-fold over pair groups, stratified by match.")
@click.option("--seed", default=0, show_default=True, help="Seed of the fold assignment.")
@click.option("--init-seed", type=int, default=None, help="Seed of the initial weights and batches (default: --seed).")
@click.option("--epochs", default=600, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
def train_correspond_cmd(store_path, pairs_csv, video_features, music_features, out, objective, emotion_branches, folds, seed,
                         init_seed, epochs, lr) -> None:
    """Music-video correspondence: does this music fit this video? Also the retrieval towers.

    Reports accuracy, F1 and ROC AUC on matched vs mismatched pairs, and top-1/3/5 +
    mAP retrieval (a hit = same emotion) in both directions.
    """
    from mvfx.heads.models.correspond import CorrespondHead
    from mvfx.heads.runs.correspond import train_correspond

    head = CorrespondHead(video_features=video_features, music_features=music_features, objective=objective,
                          emotion_branches=emotion_branches, max_epochs=epochs, lr=lr, seed=seed if init_seed is None else init_seed)
    progress, on_fold = fold_progress(folds, lambda r: f"fold {r['fold']}: accuracy {r['accuracy']:.2f}")
    with reporting_warnings(), progress:
        metrics = train_correspond(store_path, pairs_csv, head, out, folds, seed, on_fold)
    agg, ret = metrics["models"][metrics["main"]]["aggregate"], metrics["retrieval"]
    console.print(f"[bold]match[/bold] over {metrics['n_pairs']} pairs: accuracy {agg['accuracy']['mean']:.3f} ± {agg['accuracy']['std']:.3f} "
                  f"(chance {metrics['chance_accuracy']:.2f}), F1 {agg['f1']['mean']:.3f}, ROC AUC {agg['roc_auc']['mean']:.3f}")
    for direction, scores in ret.items():
        console.print(f"[bold]{direction.replace('_', ' ')}[/bold]: top-1 {scores['top1']['mean']:.3f}, top-3 {scores['top3']['mean']:.3f}, "
                      f"top-5 {scores['top5']['mean']:.3f}, mAP {scores['map']['mean']:.3f}")
    console.print(f"in {metrics['seconds']:.0f} s -> {out}")
