"""Stage 2: adversarial + perceptual visual refinement on top of a frozen stage-1 network.

``x_hat = R(x_u) + lambda * V(R(x_u))`` (see :class:`csmri.models.refinement.GatedRefinement`), with R
frozen and V, lambda and a PatchGAN discriminator D trained alternately (manual optimisation):

1. D step: ``BCE(D(x), 0.9) + BCE(D(replay(x_hat.detach())), 0)``;
2. V step: ``L(V) = w_adv L_adv/M + w_feat L_feat/N + w_vgg L_VGG/O + alpha L_pen`` (see
   :class:`csmri.losses.normalizer.LossNormalizer`).

DDP: the D step leaves V without gradients and the V step (with D toggled off) leaves D without them, so
multi-GPU runs use ``find_unused_parameters=True`` (set by ``experiment=stage2`` for ``trainer=ddp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from csmri.data.datamodule import training_batch_counter
from csmri.lit._config import build, plain
from csmri.lit.checkpoints import load_reconstruction_net
from csmri.lit.images import log_sample_images
from csmri.lit.replay import ReplayBuffer
from csmri.losses.adversarial import DiscriminatorLoss, FeatureMatchingLoss, GeneratorAdversarialLoss
from csmri.losses.normalizer import LossNormalizer
from csmri.losses.perceptual import PerceptualLoss, refinement_penalty
from csmri.metrics.image import PSNR, SSIM, magnitude
from csmri.models.refinement import GatedRefinement
from csmri.physics import channels_to_complex, complex_to_channels

D_INPUTS = ("magnitude", "complex")


class RefinementModule(L.LightningModule):
    """Trains the gated refinement V (and D) on top of the frozen stage-1 network R.

    Args:
        net: ``recon_ckpt`` (stage-1 checkpoint), ``refine`` ``{channels, gate_init, net}``,
            ``discriminator`` ``{input, net}`` and ``perceptual`` (VGG extractor config).
        loss: ``normalizer`` ``{mode, weights, alpha, alpha_target}``, ``label_smoothing`` and
            ``replay`` ``{capacity, p}``.
        lr, betas: Adam for V (with lambda) and D (paper: 2e-4, (0.5, 0.999)).
        grad_clip: gradient-norm clipping for both (``None`` = off).
        log_images_every_n_steps: sample images (R, x_hat, x_hat - R, ground truth) every N batches.
        recon_net: R's architecture; filled in from the stage-1 checkpoint (used when reloading).
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        grad_clip: float | None = None,
        log_images_every_n_steps: int = 200,
        recon_net: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        net, loss, betas = plain(net), plain(loss), tuple(betas)
        recon_net = plain(recon_net) if recon_net is not None else None
        self.automatic_optimization = False
        self.recon = self._frozen_recon(net.get("recon_ckpt"), recon_net)
        self.save_hyperparameters(ignore=["recon_net"])
        self.hparams["recon_net"] = self._recon_config

        refine = net["refine"]
        channels = refine.get("channels", "complex")
        n_refined = 2 if channels == "complex" else 1
        refiner = build({**refine["net"], "in_channels": n_refined, "out_channels": n_refined}, "refinement net")
        self.refinement = GatedRefinement(refiner, refine.get("gate_init", 0.0), channels)

        d_cfg = net["discriminator"]
        self.d_input = d_cfg.get("input", "magnitude")
        if self.d_input not in D_INPUTS:
            raise ValueError(f"discriminator input must be one of {D_INPUTS}, got {self.d_input!r}")
        d_channels = 1 if self.d_input == "magnitude" else 2
        self.discriminator = build({**d_cfg["net"], "in_channels": d_channels}, "discriminator")
        self.perceptual = PerceptualLoss(build(net["perceptual"], "perceptual feature extractor"))

        self.d_loss = DiscriminatorLoss(loss.get("label_smoothing", 0.1))
        self.adv_loss = GeneratorAdversarialLoss()
        self.feat_loss = FeatureMatchingLoss()
        self.normalizer = LossNormalizer(**loss.get("normalizer", {}))
        self.replay = ReplayBuffer(**loss.get("replay", {}))
        self.val_psnr, self.val_ssim, self.val_psnr_recon = PSNR(), SSIM(), PSNR()

    # -- construction helpers ------------------------------------------------------------------------
    def _frozen_recon(self, recon_ckpt: str | None, recon_net: Mapping[str, Any] | None) -> nn.Module:
        if recon_net is not None:  # reloading a stage-2 checkpoint: R's weights come with its state dict
            recon, self._recon_config = build(recon_net, "stage-1 network"), dict(recon_net)
        elif not recon_ckpt:
            raise ValueError("stage 2 needs the stage-1 checkpoint: set model.recon_ckpt=PATH/checkpoints/best.ckpt")
        else:
            recon, self._recon_config = load_reconstruction_net(recon_ckpt)
        recon.eval()
        for p in recon.parameters():
            p.requires_grad_(False)
        return recon

    @property
    def perceptual_backbone(self) -> str:
        return getattr(self.perceptual.extractor, "backbone", type(self.perceptual.extractor).__name__)

    def run_metadata(self) -> dict[str, Any]:
        """Facts recorded in run_info.json and the logger's config."""
        return {"perceptual_backbone": self.perceptual_backbone}

    def train(self, mode: bool = True) -> RefinementModule:
        super().train(mode)
        self.recon.eval()  # R stays frozen: no batch-norm/dropout updates
        return self

    # -- forward ---------------------------------------------------------------------------------------
    def base_reconstruction(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """R(x_u) as 2 channels ``(B, 2, H, W)``, without gradient."""
        with torch.no_grad():
            return self.recon(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"])

    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The refined reconstruction ``x_hat``, complex ``(B, H, W)``."""
        refined, _ = self.refinement(self.base_reconstruction(batch))
        return channels_to_complex(refined)

    def _discriminator_input(self, channels: torch.Tensor) -> torch.Tensor:
        return magnitude(channels).unsqueeze(1) if self.d_input == "magnitude" else channels

    def _reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="mean") if self._trainer is not None else value

    def _backward_and_step(self, optimizer: Any, loss: torch.Tensor) -> None:
        """Backward, optional clipping and step (call inside the optimiser's toggle)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    # -- training ---------------------------------------------------------------------------------------
    def generator_terms(
        self, refined: torch.Tensor, x_v: torch.Tensor, target: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The raw V loss terms ``{adv, feat, vgg, pen}`` and D's logits on ``refined``."""
        fake_logits, fake_features = self.discriminator(self._discriminator_input(refined))
        with torch.no_grad():
            _, real_features = self.discriminator(self._discriminator_input(target))
        terms = {
            "adv": self.adv_loss(fake_logits),
            "feat": self.feat_loss(real_features, fake_features),
            "vgg": self.perceptual(magnitude(refined), magnitude(target)),
            "pen": refinement_penalty(x_v),
        }
        return terms, fake_logits

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        opt_v, opt_d = self.optimizers()
        target = complex_to_channels(batch["target"])
        base = self.base_reconstruction(batch)
        refined, x_v = self.refinement(base)
        n = target.shape[0]

        # D step: real images against (replayed) refined images, fakes detached
        with self.toggled_optimizer(opt_d):
            fake_for_d = self.replay.query(self._discriminator_input(refined))
            real_logits, _ = self.discriminator(self._discriminator_input(target))
            fake_logits_d, _ = self.discriminator(fake_for_d)
            loss_d = self.d_loss(real_logits, fake_logits_d)
            self._backward_and_step(opt_d, loss_d)

        # V step (with lambda): adversarial + feature matching + perceptual + penalty
        with self.toggled_optimizer(opt_v):
            terms, fake_logits = self.generator_terms(refined, x_v, target)
            if not bool(self.normalizer.initialised):
                self.normalizer.initialise(terms, reduce=self._reduce_mean)
            loss_v, normalised = self.normalizer(terms)
            self._backward_and_step(opt_v, loss_v)

        logs = {"train/loss_d": loss_d, "train/loss_v": loss_v,
                "train/d_real": torch.sigmoid(real_logits).mean(), "train/d_fake": torch.sigmoid(fake_logits).mean()}  # fmt: skip
        logs.update({f"train/{k}": v for k, v in {**terms, **normalised}.items()})
        self.log_dict({k: v.detach() for k, v in logs.items()}, batch_size=n)
        self.log("train/lambda", self.refinement.gate.detach(), prog_bar=True, batch_size=n)

        every = self.hparams.log_images_every_n_steps
        if every and training_batch_counter(self.trainer) % every == 0:
            self._log_samples("train", batch, base, refined)

    def _log_samples(self, stage: str, batch: Mapping[str, Any], base: torch.Tensor, refined: torch.Tensor) -> None:
        r, x_hat = magnitude(base[:1])[0], magnitude(refined[:1])[0]
        columns = {"zero-filled": batch["zero_filled"][0].abs(), "R(x_u)": r, "x_hat": x_hat,
                   "x_hat - R": x_hat - r, "ground truth": batch["target"][0].abs()}  # fmt: skip
        log_sample_images(self, f"{stage}/step{self.global_step:07d}", columns)

    # -- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        base = self.base_reconstruction(batch)
        refined, _ = self.refinement(base)
        target = magnitude(batch["target"])
        n = target.shape[0]
        self.val_psnr(magnitude(refined), target)
        self.val_ssim(magnitude(refined), target)
        self.val_psnr_recon(magnitude(base), target)
        self.log("val/psnr", self.val_psnr, prog_bar=True, batch_size=n)
        self.log("val/ssim", self.val_ssim, batch_size=n)
        self.log("val/psnr_recon", self.val_psnr_recon, batch_size=n)
        if batch_idx == 0:
            self._log_samples("val", batch, base, refined)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        opt_v = torch.optim.Adam(self.refinement.parameters(), lr=hp.lr, betas=hp.betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=hp.betas)
        return [opt_v, opt_d]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["csmri_module"] = "refinement"
        checkpoint["perceptual_backbone"] = self.perceptual_backbone
