"""An offline perceptual backbone: VGG-19's convolutional layers trained as the encoder of an autoencoder.

No ImageNet weights are reachable on machines without internet; a random-weight VGG-19 is the loud fallback. This
module offers a stand-in that has at least seen MR-like images: the VGG-19 ``features`` up to ``layer`` (the layer
the perceptual loss reads, ``relu5_4`` by default) encode the fully-sampled magnitude image, a small decoder
(nearest-neighbour upsampling + 3x3 convolutions) reconstructs it, and the L1 reconstruction error trains both.
It never sees labels or the segmentation network (so it cannot leak the SIS structure's annotation).

At the end of training the encoder is written as the ``features.*`` entries of a torchvision ``vgg19`` state dict
(layers past ``layer`` at their seeded initialisation; no classifier: ~80 MB instead of ~575 MB) to
``<run dir>/<weights_file>``, which the perceptual loss loads with ``model.net.perceptual.weights=<that file>``
(recorded as backbone ``vgg19-file:<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from csmri.config import plain
from csmri.lit._config import build
from csmri.lit.optim import adam, build_optimizer
from csmri.lit.speed import NetworkSpeedMixin
from csmri.models.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYERS

AUTOENCODER_WEIGHTS = "vgg19_autoencoder.pth"  # file name of the exported VGG-19 in the run dir (the default)
DEFAULT_NET = {"layer": "relu5_4", "seed": 0, "decoder_channels": [256, 128, 64, 32]}
DEFAULT_LOSS = {"_target_": "torch.nn.L1Loss"}


def _seeded_vgg19(seed: int) -> nn.Module:
    from torchvision.models import vgg19

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return vgg19(weights=None)


class PerceptualPretrainModule(NetworkSpeedMixin, L.LightningModule):
    """Autoencoder pre-training of VGG-19 on fully-sampled magnitudes ``batch["target"].abs()`` (in [0, 1]).

    Logged: ``train/loss``, ``val/loss`` (mean |x_rec - x|).

    Args:
        net: ``layer`` (VGG-19 layer the encoder ends at), ``seed`` (initialisation), ``decoder_channels``
            (one upsampling stage per max-pool inside the encoder).
        loss: ``{_target_: ...}`` reconstruction loss (default L1).
        optimizer: ``_partial_`` optimiser config (default Adam 1e-4, betas (0.9, 0.999)).
        weights_file: file name of the exported VGG-19 state dict in the run directory.
        channels_last, compile: see :mod:`csmri.lit.speed`.
    """

    networks = ("encoder", "decoder")
    wide_convolutions = True  # VGG-19 + decoder: ~2x faster in bf16 on avx512_bf16 CPUs (csmri.lit.precision)

    def __init__(
        self,
        net: Mapping[str, Any] = DEFAULT_NET,
        loss: Mapping[str, Any] = DEFAULT_LOSS,
        optimizer: Mapping[str, Any] | None = None,
        weights_file: str = AUTOENCODER_WEIGHTS,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        net, loss = {**DEFAULT_NET, **plain(net)}, plain(loss)
        optimizer = plain(optimizer) if optimizer is not None else adam(1e-4, (0.9, 0.999))
        self.save_hyperparameters()
        if net["layer"] not in LAYERS:
            raise ValueError(f"unknown VGG-19 layer {net['layer']!r}; choose one of {sorted(LAYERS)}")
        self.encoder = _seeded_vgg19(net["seed"]).features[: LAYERS[net["layer"]] + 1]
        pools = sum(isinstance(m, nn.MaxPool2d) for m in self.encoder)
        channels = list(net["decoder_channels"])
        if len(channels) != pools:
            raise ValueError(f"decoder_channels needs one entry per max-pool of the encoder ({pools}), got {channels}")
        in_channels = [m for m in self.encoder if isinstance(m, nn.Conv2d)][-1].out_channels
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, padding=1)]
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        layers.append(nn.Conv2d(in_channels, 1, 3, padding=1))
        self.decoder = nn.Sequential(*layers)
        self.loss_fn: nn.Module = build(loss, "loss")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Magnitudes ``(B, H, W)`` (H, W divisible by 2^pools) -> reconstructions ``(B, H, W)``, fp32."""
        rgb = magnitude.unsqueeze(1).expand(-1, 3, -1, -1)  # the same input VGGFeatures builds
        return self.decoder(self.encoder((rgb - self.mean) / self.std))[:, 0].float()

    def _loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, int]:
        magnitude = batch["target"].abs().float()
        return self.loss_fn(self(magnitude), magnitude), magnitude.shape[0]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, n = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        loss, n = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.hparams.optimizer, [*self.encoder.parameters(), *self.decoder.parameters()])

    def vgg19_state_dict(self) -> dict[str, torch.Tensor]:
        """The ``features.*`` entries of a torchvision ``vgg19`` state dict: the trained encoder, the layers past it at
        their seeded initialisation (the classifier, unused by any feature extractor, is left out)."""
        features = _seeded_vgg19(self.hparams.net["seed"]).features
        features[: len(self.encoder)].load_state_dict(self.encoder.state_dict())
        return {f"features.{k}": v.detach().cpu().contiguous() for k, v in features.state_dict().items()}

    def export_weights(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.vgg19_state_dict(), tmp)
        tmp.replace(path)
        return path

    def on_fit_end(self) -> None:
        if self.trainer.global_rank == 0:
            self.export_weights(Path(self.trainer.default_root_dir) / self.hparams.weights_file)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["csmri_module"] = "perceptual_pretrain"
