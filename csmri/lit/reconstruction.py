"""Stage 1: a reconstruction network (RecNet by default) trained with MSE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from csmri.config import plain
from csmri.lit._config import build
from csmri.metrics.image import PSNR, SSIM, magnitude
from csmri.physics import channels_to_complex, complex_to_channels

DEFAULT_NET = {"_target_": "csmri.models.RecNet"}
DEFAULT_LOSS = {"_target_": "torch.nn.MSELoss"}


class ReconstructionModule(L.LightningModule):
    """Trains ``net`` to map zero-filled images to the fully-sampled target.

    The loss compares 2-channel ``[real, imag]`` images (MSE by default). Logged metrics:
    ``train/loss``, ``train/psnr``, ``train/ssim``, ``val/loss``, ``val/psnr``, ``val/ssim`` and, as a reference,
    ``val/psnr_zero_filled`` — PSNR/SSIM on per-slice magnitudes with data range = target max.

    Args:
        net: ``{_target_: ..., **kwargs}`` of the network (called ``net(x_u, kspace, mask)``).
        loss: ``{_target_: ..., **kwargs}`` of the loss on 2-channel images.
        lr, betas, weight_decay: Adam settings (paper: lr 2e-4).
    """

    def __init__(
        self,
        net: Mapping[str, Any] = DEFAULT_NET,
        loss: Mapping[str, Any] = DEFAULT_LOSS,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        net, loss, betas = plain(net), plain(loss), tuple(betas)
        self.save_hyperparameters()
        self.net = build(net, "net")
        self.loss_fn: nn.Module = build(loss, "loss")
        self.train_psnr, self.train_ssim = PSNR(), SSIM()
        self.val_psnr, self.val_ssim, self.val_psnr_zf = PSNR(), SSIM(), PSNR()

    def forward(self, zero_filled: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Complex zero-filled image ``(B, H, W)`` -> complex reconstruction ``(B, H, W)``."""
        return channels_to_complex(self.net(complex_to_channels(zero_filled), kspace, mask))

    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Reconstruction of a simulated batch (see :class:`csmri.data.MRIDataModule`)."""
        return self(batch["zero_filled"], batch["kspace"], batch["mask"])

    def _step(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        recon = self.reconstruct(batch)
        loss = self.loss_fn(complex_to_channels(recon), complex_to_channels(batch["target"]))
        return recon, loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        recon, loss = self._step(batch)
        n = recon.shape[0]
        image, target = magnitude(recon.detach()), magnitude(batch["target"])
        self.train_psnr(image, target)
        self.train_ssim(image, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/psnr", self.train_psnr, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/ssim", self.train_ssim, on_step=True, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        recon, loss = self._step(batch)
        n = recon.shape[0]
        target = magnitude(batch["target"])
        self.val_psnr(magnitude(recon), target)
        self.val_ssim(magnitude(recon), target)
        self.val_psnr_zf(magnitude(batch["zero_filled"]), target)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, batch_size=n)
        self.log("val/psnr_zero_filled", self.val_psnr_zf, batch_size=n)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["csmri_module"] = "reconstruction"

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=hp.betas, weight_decay=hp.weight_decay)
