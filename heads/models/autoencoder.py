"""The unsupervised slow-fast autoencoder that pre-trains the MVF networks' music and video encoders.

The encoders are the classifier's own ``ModalityNet``s (joined by MMTM); decoders rebuild the normalised
log-mel + phase image and the frame stack from the encoders' last maps, trained with MSE on every clip, no
labels (``Autoencoder``, an estimator). ``save_encoders`` writes ``encoders.pt`` and ``autoencoder.json`` (the
encoders' architectures) into a folder; ``MvfHead(init_from=FOLDER)`` starts its networks from them (``load_encoders``).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mvfx.heads.estimator import CheckedEstimator
from mvfx.heads.models.mvf_nets import ARCHITECTURES, ModalityNet, MvfClassifier, Normaliser, autocast, cross_modal_mmtm, parameter_count, run_stages
from mvfx.heads.torch_fit import FIT_RULES
from mvfx.heads.torch_random import built
from mvfx.media.errors import MvfxError
from mvfx.media.rules import BOOL, TEXT, Interval, OneOf, Rule

ENCODER_FILE = "encoders.pt"
ABOUT_FILE = "autoencoder.json"


class _Decoder(nn.Module):
    """Transposed convolutions from a network's last map back up, interpolated to the input's exact size."""

    def __init__(self, dims: int, widths: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        up = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        layers, chans = [], list(reversed(widths))
        for cin, cout in zip(chans, [*chans[1:], chans[-1]]):
            layers += [up(cin, cout, 4, 2, 1), norm(cout), nn.ReLU(inplace=True)]
        layers.append((nn.Conv3d if dims == 3 else nn.Conv2d)(chans[-1], out_channels, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        y = self.net(z)
        if y.shape[2:] != shape[2:]:  # e.g. A3's slow pathway: fewer time steps than the input
            y = nn.functional.interpolate(y, size=shape[2:], mode="trilinear" if y.dim() == 5 else "bilinear", align_corners=False)
        return y


class SlowFastAutoencoder(nn.Module):
    """Music and video encoders (the classifier's ``ModalityNet``s, joined by MMTM) and decoders that rebuild the
    normalised log-mel + phase image and the frame stack from the encoders' last maps; trained with MSE."""

    def __init__(self, music: str, video: str, mmtm: bool = True, se: bool = False) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"music": ModalityNet("music", music, se), "video": ModalityNet("video", video, se)})
        self.mmtm = cross_modal_mmtm(self.nets) if mmtm else None
        self.decoders = nn.ModuleDict({
            m: _Decoder(net.dims, net.channels, 2 if m == "music" else 3) for m, net in self.nets.items()
        })

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states = run_stages(dict(self.nets), inputs, self.mmtm)
        return {m: self.decoders[m](self.nets[m].joint(states[m]), inputs[m].shape) for m in self.nets}


class Autoencoder(CheckedEstimator):
    """The autoencoder as an estimator: its hyper-parameters are constructor arguments, their defaults here only.

    ``fit(x)`` checks its parameters (one line for a bad one), trains it on every clip of ``x`` (no labels;
    ``on_epoch(epoch, loss)`` hears of each epoch) and learns ``model_`` (the trained network, on the CPU),
    ``loss_`` (the reconstruction loss of each epoch) and ``parameters_`` (the parameters of each encoder and in all).
    """

    _parameter_constraints: ClassVar[dict[str, list[Rule]]] = {
        "music": [OneOf(ARCHITECTURES)], "video": [OneOf(ARCHITECTURES)], "mmtm": [BOOL], "se": [BOOL],
        "lr": FIT_RULES["lr"], "batch_size": FIT_RULES["batch_size"], "epochs": [Interval(int, 1)], "device": [TEXT],
        "seed": FIT_RULES["seed"],
    }

    def __init__(self, music: str = "A0", video: str = "A3", mmtm: bool = True, se: bool = False, lr: float = 1e-3,
                 batch_size: int = 8, epochs: int = 20, device: str = "cpu", seed: int = 0) -> None:
        self.music, self.video, self.mmtm, self.se = music, video, mmtm, se
        self.lr, self.batch_size, self.epochs, self.device, self.seed = lr, batch_size, epochs, device, seed

    def fit(self, x: dict[str, np.ndarray], y: None = None, on_epoch: Callable[[int, float], None] | None = None) -> Autoencoder:
        """``y`` is unused: the autoencoder rebuilds its inputs."""
        self.check_params()
        model = built(lambda: SlowFastAutoencoder(self.music, self.video, self.mmtm, self.se),
                      torch.Generator().manual_seed(self.seed)).to(self.device)
        normaliser = Normaliser.fitted(x)
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        n, self.loss_ = len(x["music"]), []
        for epoch in range(self.epochs):
            model.train()
            total = 0.0
            for batch in torch.randperm(n, generator=generator).split(self.batch_size):
                inputs = normaliser.tensors(x, batch.numpy(), self.device)
                with autocast(self.device):
                    rebuilt = model(inputs)
                    loss = sum(nn.functional.mse_loss(rebuilt[m].float(), inputs[m]) for m in inputs)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            self.loss_.append(total / n)
            if on_epoch:
                on_epoch(epoch, self.loss_[-1])
        self.parameters_ = {m: parameter_count(net) for m, net in model.nets.items()} | {"total": parameter_count(model)}
        self.model_ = model.to("cpu")
        return self


def save_encoders(model: SlowFastAutoencoder, out: str | Path) -> Path:
    """``out``/encoders.pt (the encoders' and MMTM's weights) and ``out``/autoencoder.json (their architectures, which
    ``load_encoders`` checks the classifier's against)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({m: net.state_dict() for m, net in model.nets.items()} | ({"mmtm": model.mmtm.state_dict()} if model.mmtm else {}),
               out / ENCODER_FILE)
    about = {m: model.nets[m].arch for m in ("music", "video")} | {"mmtm": model.mmtm is not None, "se": model.nets["music"].squeeze_excite}
    (out / ABOUT_FILE).write_text(json.dumps(about, indent=2))
    return out


def load_encoders(model: MvfClassifier, folder: str | Path) -> None:
    """Start a classifier's music and video networks (and MMTM) from a pre-trained autoencoder's encoders."""
    folder = Path(folder)
    path, about = folder / ENCODER_FILE, folder / ABOUT_FILE
    if not path.is_file() or not about.is_file():
        raise MvfxError(f"{folder}: no pre-trained encoders ({ENCODER_FILE}); make them with `mvfx train autoencoder`")
    trained = json.loads(about.read_text())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for m in ("music", "video"):
        if m in model.nets:
            if model.nets[m].arch != trained[m] or model.nets[m].squeeze_excite != trained["se"]:
                raise MvfxError(f"{folder}: the encoders are music {trained['music']}, video {trained['video']}"
                                f"{' with SE' if trained['se'] else ''}; train the classifier with the same (--{m} {trained[m]})")
            model.nets[m].load_state_dict(saved[m])
    if model.mmtm is not None and "mmtm" in saved:
        model.mmtm.load_state_dict(saved["mmtm"])
