"""The base of every LightningModule that reconstructs (stage 1, stage 2, DAGAN, joint).

It owns what all of them share: validation PSNR/SSIM on per-slice magnitudes (data range = target max, see
:mod:`csmri.metrics.image`), sample-image panels at validation, and optimisers built from ``_partial_`` configs
(:mod:`csmri.lit.optim`). Subclasses provide :meth:`generate` — the reconstruction as 2 channels ``(B, 2, H, W)``
plus extras — and may add validation metrics in :meth:`log_validation_extras`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from csmri.lit.images import log_sample_images
from csmri.lit.speed import NetworkSpeedMixin
from csmri.metrics.image import PSNR, SSIM, magnitude
from csmri.physics import channels_to_complex


class ReconstructionBase(NetworkSpeedMixin, L.LightningModule):
    """Validation metrics, sample images and optimiser configs for reconstruction modules.

    Logged at validation: ``val/psnr`` (progress bar), ``val/ssim``, plus the subclass's extras.
    """

    csmri_module = "reconstruction"

    def __init__(self) -> None:
        super().__init__()
        self.val_psnr, self.val_ssim = PSNR(), SSIM()

    # -- to be provided by subclasses ---------------------------------------------------------------
    def generate(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reconstruction ``(B, 2, H, W)`` of a simulated batch and extras for the subclass's hooks."""
        raise NotImplementedError

    def log_validation_extras(
        self, batch: Mapping[str, Any], output: torch.Tensor, extras: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> None:
        """Subclass hook for extra validation metrics (``target`` is the magnitude ``(B, H, W)``)."""

    # -- common API ---------------------------------------------------------------------------------
    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The reconstruction of a simulated batch (see :class:`csmri.data.MRIDataModule`), complex ``(B, H, W)``."""
        return channels_to_complex(self.generate(batch)[0])

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        output, extras = self.generate(batch)
        output = output.float()  # metrics in fp32 whatever the networks ran in
        target = magnitude(batch["target"])
        n = target.shape[0]
        self.val_psnr(magnitude(output), target)
        self.val_ssim(magnitude(output), target)
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, batch_size=n)
        self.log_validation_extras(batch, output, extras, target)
        if batch_idx == 0:
            self.log_samples("val", batch, output)

    # -- sample images ------------------------------------------------------------------------------
    def sample_columns(self, batch: Mapping[str, Any], output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Titled magnitude images ``(H, W)`` of the batch's first slice for the sample panel."""
        return {
            "zero-filled": batch["zero_filled"][0].abs(),
            "output": magnitude(output[:1])[0],
            "ground truth": batch["target"][0].abs(),
        }

    def log_samples(self, stage: str, batch: Mapping[str, Any], output: torch.Tensor) -> None:
        log_sample_images(self, f"{stage}/step{self.global_step:07d}", self.sample_columns(batch, output))

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``Trainer.predict``: ``{"reconstruction": complex (B, H, W) fp32, "key": [slice keys]}``."""
        return {"reconstruction": channels_to_complex(self.generate(batch)[0].float()), "key": batch.get("key")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["csmri_module"] = self.csmri_module
        # the acquisition the network was trained for (mask type, acceleration, ...): csmri reconstruct reuses it
        acquisition = getattr(getattr(self._trainer, "datamodule", None), "acquisition", None)
        if acquisition is not None:
            checkpoint["csmri_acquisition"] = dict(acquisition)
