"""Stage 1: a reconstruction network (RecNet by default) trained with MSE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from csmri.lit._config import build
from csmri.lit.base import ReconstructionBase
from csmri.lit.optim import build_optimizer, build_scheduler, plain_configs
from csmri.metrics.image import PSNR, SSIM, magnitude
from csmri.physics import channels_to_complex, complex_to_channels

DEFAULT_NET = {"_target_": "csmri.models.RecNet"}
DEFAULT_LOSS = {"_target_": "torch.nn.MSELoss"}


class ReconstructionModule(ReconstructionBase):
    """Trains ``net`` to map zero-filled images to the fully-sampled target.

    The loss compares 2-channel ``[real, imag]`` images (MSE by default). Logged metrics:
    ``train/loss`` (``train/psnr``, ``train/ssim`` with ``train_metrics``), ``val/loss``, ``val/psnr``, ``val/ssim``
    and, as a reference, ``val/psnr_zero_filled`` — PSNR/SSIM on per-slice magnitudes with data range = target max.

    Args:
        net: ``{_target_: ..., **kwargs}`` of the network (called ``net(x_u, kspace, mask)``).
        loss: ``{_target_: ..., **kwargs}`` of the loss on 2-channel images.
        optimizer: ``_partial_`` optimiser config (default Adam, lr 2e-4).
        scheduler: ``_partial_`` LR-scheduler config stepped per epoch, or ``None``.
        train_metrics: also log ``train/psnr`` and ``train/ssim`` (epoch means; off by default: SSIM on every
            training batch costs time nobody asked for).
        channels_last, compile: how the networks run (see :mod:`csmri.lit.speed`).
    """

    csmri_module = "reconstruction"
    networks = ("net",)

    def __init__(
        self,
        net: Mapping[str, Any] = DEFAULT_NET,
        loss: Mapping[str, Any] = DEFAULT_LOSS,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        train_metrics: bool = False,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        net, loss, optimizer, scheduler = plain_configs(net, loss, optimizer, scheduler, default_lr=2e-4)
        self.save_hyperparameters()
        self.net = build(net, "net")
        self.loss_fn: nn.Module = build(loss, "loss")
        self.train_psnr, self.train_ssim = PSNR(), SSIM()
        self.val_psnr_zf = PSNR()

    def forward(self, zero_filled: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Complex zero-filled image ``(B, H, W)`` -> complex reconstruction ``(B, H, W)``."""
        return channels_to_complex(self.net(complex_to_channels(zero_filled), kspace, mask))

    def generate(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.net(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"]), {}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        output = self.generate(batch)[0].float()
        loss = self.loss_fn(output, complex_to_channels(batch["target"]))
        n = output.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        if self.hparams.train_metrics:
            image, target = magnitude(output.detach()), magnitude(batch["target"])
            self.train_psnr(image, target)
            self.train_ssim(image, target)
            self.log("train/psnr", self.train_psnr, on_step=False, on_epoch=True, batch_size=n)
            self.log("train/ssim", self.train_ssim, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def log_validation_extras(self, batch, output, extras, target) -> None:  # type: ignore[override]
        n = target.shape[0]
        loss = self.loss_fn(output, complex_to_channels(batch["target"]))
        self.val_psnr_zf(magnitude(batch["zero_filled"]), target)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/psnr_zero_filled", self.val_psnr_zf, batch_size=n)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.hparams.optimizer, self.net.parameters())
        scheduler = build_scheduler(self.hparams.scheduler, optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
