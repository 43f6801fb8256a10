"""`mvfx train mvf` and `mvfx train autoencoder`: the MVF networks trained end to end on inputs cached in a store."""
from __future__ import annotations

import click

from mvfx.commands.common import console, fold_progress, reporting_warnings
from mvfx.heads.report import scores_text

ARCH = click.Choice(["A0", "A1", "A2", "A3"])


@click.command("mvf")
@click.argument("store_path", metavar="STORE")
@click.option("--labels", required=True, help="CSV clip_id,label (exciting, fear, neutral, relaxation, sad, tension, ...).")
@click.option("--music", type=ARCH, default=None, help="Music network on logmel_phase (A0 dense residual, A1 filter-separable, "
                                                       "A2 channel+filter-separable, A3 slow-fast).")
@click.option("--video", type=ARCH, default=None, help="Video network on frames (same choices).")
@click.option("--face", type=ARCH, default=None, help="Face network on face_crops (same choices).")
@click.option("--mmtm", is_flag=True, help="Join the music and video networks with MMTM after their last two stages.")
@click.option("--se", is_flag=True, help="Squeeze-and-excitation in every block.")
@click.option("--init-from", type=click.Path(file_okay=False), default=None,
              help="Start music and video from `mvfx train autoencoder` encoders; the run also trains from scratch and reports both.")
@click.option("--out", "-o", required=True, help="Run folder.")
@click.option("--folds", default=5, show_default=True, help="Stratified k-fold over clips.")
@click.option("--epochs", default=40, show_default=True, help="Most epochs (early stopping usually ends sooner).")
@click.option("--patience", default=8, show_default=True, help="Epochs without validation improvement before stopping.")
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--frame-size", default=64, show_default=True, help="Side the cached frames are resized to (they are stored at 112).")
@click.option("--music-frames", default=256, show_default=True, help="STFT frames of log-mel + phase the music network sees (256: 5.9 s).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]", help="auto = a GPU when torch sees one (bf16 autocast).")
@click.option("--seed", default=0, show_default=True, help="Seed of the folds, initial weights and batches.")
def train_mvf_cmd(store_path, labels, music, video, face, mmtm, se, init_from, out, folds, epochs, patience, lr, batch_size, frame_size,
                  music_frames, device, seed) -> None:
    """MVF emotion classifier: any unimodal or multimodal combination of music, video and face networks.

    \b
    Needs the cached inputs: mvfx extract CORPUS --store S -e logmel_phase,frames,face_crops
      mvfx train mvf S --labels labels.csv --music A0 --video A3 --mmtm --out runs/mvf
    Writes the fusion classifier's run folder (metrics.json, confusion.png, roc.png, predictions.csv, model/),
    with every branch's parameter count in metrics.json.
    """
    from mvfx.extractors.torch_device import resolve_device
    from mvfx.heads.models.mvf import MvfHead
    from mvfx.heads.runs.mvf import train_mvf

    head = MvfHead(music=music, video=video, face=face, mmtm=mmtm, se=se, frame_size=frame_size, music_frames=music_frames,
                   lr=lr, batch_size=batch_size, max_epochs=epochs, patience=patience, init_from=init_from,
                   device=resolve_device(device, simulated_ok=False), seed=seed)
    runs = 2 if init_from else 1
    progress, on_fold = fold_progress(folds * runs, lambda r: f"fold {r['fold']}: accuracy {r['accuracy']:.2f}")
    with reporting_warnings(), progress:
        metrics = train_mvf(store_path, labels, head, out, folds, seed, on_fold=lambda _name, row: on_fold(row))
    console.print("parameters: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in metrics["parameters"].items()))
    for name, model in metrics["models"].items():
        console.print(f"[bold]{name}[/bold]: {scores_text(model['aggregate'])}")
    console.print(f"{metrics['n_clips']} clips, {len(metrics['classes'])} classes (chance {metrics['chance_accuracy']:.3f}) "
                  f"in {metrics['seconds']:.0f} s -> {out}")


@click.command("autoencoder")
@click.argument("store_path", metavar="STORE")
@click.option("--out", "-o", required=True,
              help="Run folder: the encoders (encoders.pt, autoencoder.json), config.json, metrics.json (reconstruction MSE per epoch).")
@click.option("--music", type=ARCH, default="A0", show_default=True, help="Music encoder architecture.")
@click.option("--video", type=ARCH, default="A3", show_default=True, help="Video encoder architecture.")
@click.option("--no-mmtm", is_flag=True, help="Leave out the MMTM between the audio and video paths.")
@click.option("--se", is_flag=True, help="Squeeze-and-excitation in every block.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--frame-size", default=64, show_default=True)
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]")
@click.option("--seed", default=0, show_default=True)
def train_autoencoder_cmd(store_path, out, music, video, no_mmtm, se, epochs, lr, batch_size, frame_size, device, seed) -> None:
    """Pre-train the slow-fast audio-video autoencoder on every clip of STORE (no labels needed): encoders
    with MMTM between them, decoders that rebuild log-mel + phase and the frames, MSE loss.

    \b
    Fine-tune a classifier from it with the same architectures:
      mvfx train mvf S --labels labels.csv --music A0 --video A3 --mmtm --init-from runs/ae --out runs/mvf
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mvfx.extractors.torch_device import resolve_device
    from mvfx.heads.models.autoencoder import Autoencoder
    from mvfx.heads.runs.mvf import train_autoencoder

    progress = Progress(TextColumn("[bold]epochs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[last]}"), console=console)
    task = progress.add_task("epochs", total=epochs, last="")
    with reporting_warnings(), progress:
        autoencoder = Autoencoder(music=music, video=video, mmtm=not no_mmtm, se=se, lr=lr, batch_size=batch_size, epochs=epochs,
                                  device=resolve_device(device, simulated_ok=False), seed=seed)
        metrics = train_autoencoder(store_path, out, autoencoder, frame_size,
                                    on_epoch=lambda e, loss: progress.update(task, advance=1, last=f"MSE {loss:.4f}"))
    loss = metrics["loss"]
    console.print(f"autoencoder music {music} + video {video}{'' if no_mmtm else ' + MMTM'} on {metrics['n_clips']} clips: "
                  f"reconstruction MSE {loss[0]:.4f} -> {loss[-1]:.4f} over {len(loss)} epochs, "
                  f"{metrics['parameters']['total'] / 1e6:.2f} M parameters, in {metrics['seconds']:.0f} s -> {out}")
