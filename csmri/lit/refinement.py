"""Stage 2: adversarial + perceptual visual refinement on top of a frozen stage-1 network.

``x_hat = R(x_u) + lambda * V(R(x_u))`` (see :class:`csmri.models.refinement.GatedRefinement`), with R
frozen and V, lambda and a PatchGAN discriminator D trained alternately (manual optimisation, see
:class:`csmri.lit.gan.AdversarialReconstructionBase`):

1. D step: ``BCE(D(x), 0.9) + BCE(D(replay(x_hat.detach())), 0)``;
2. V step: ``L(V) = w_adv L_adv/M + w_feat L_feat/N + w_vgg L_VGG/O + alpha L_pen`` (see
   :class:`csmri.losses.normalizer.LossNormalizer`).

DDP: the D step leaves V without gradients and the V step (with D toggled off) leaves D without them, so
multi-GPU runs need ``find_unused_parameters=True`` (``trainer=ddp`` sets it).

The gate has its own parameter group in V's optimiser, at ``gate_lr_multiplier`` times the optimiser's learning
rate (1 = the paper: lambda shares V's Adam). Adam moves a parameter by about its learning rate per step, so after
N steps ``|lambda| <= N * lr * gate_lr_multiplier`` whatever the losses ask for.

Logged per validation epoch (and so in ``run_info.json``'s ``final_metrics``): ``val/lambda`` (the gate),
``val/correction`` (the correction's size relative to R, see :class:`RelativeCorrection`) and D's mean scores
``val/d_real`` = mean sigmoid(D(x)) and ``val/d_fake`` = mean sigmoid(D(x_hat)) (D in eval mode: no dropout).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from csmri.config import plain
from csmri.errors import ConfigError
from csmri.lit._config import build
from csmri.lit.checkpoints import load_reconstruction_net
from csmri.lit.gan import AdversarialReconstructionBase
from csmri.lit.optim import build_optimizer, build_scheduler, plain_configs
from csmri.losses.perceptual import DEFAULT_CACHE_MB, refinement_penalty
from csmri.metrics.image import PSNR, magnitude
from csmri.models.refinement import GatedRefinement
from csmri.physics import complex_to_channels

GATE_GROUP = "gate"  # the name of lambda's parameter group in V's optimiser (the other one: "refiner")


class RelativeCorrection(Metric):
    """``sum |x_hat - R| / sum |R|`` over every element (both channels, every pixel) of the epoch's batches: the
    mean size of the correction actually added to R (``lambda * s * x_V``, in R's range) relative to R's mean size.

    0 when lambda = 0; ``|lambda| * mean |s * x_V| / mean |R|`` otherwise. Summed over processes under DDP.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correction", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("base", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, refined: torch.Tensor, base: torch.Tensor) -> None:  # (B, 2, H, W) each
        self.correction += (refined.double() - base.double()).abs().sum()
        self.base += base.double().abs().sum()

    def compute(self) -> torch.Tensor:
        return (self.correction / self.base.clamp_min(torch.finfo(torch.float64).tiny)).float()


class RefinementModule(AdversarialReconstructionBase):
    """Trains the gated refinement V (and D) on top of the frozen stage-1 network R.

    Args:
        net: ``recon_ckpt`` (stage-1 checkpoint), ``refine`` ``{channels, gate_init, net}``,
            ``discriminator`` ``{input, replay, net}`` and ``perceptual`` (VGG extractor config).
        loss: an :class:`csmri.losses.config.AdversarialLoss` (``normalizer``, ``weights``, ``alpha``,
            ``alpha_target``, ``label_smoothing``).
        optimizer: ``_partial_`` optimiser config for V (with lambda) and D (paper: Adam 2e-4, betas (0.5, 0.999)).
        gate_lr_multiplier: lambda's learning rate as a multiple of the optimiser's (its own parameter group,
            named ``gate``, in V's optimiser; V's weights are the group ``refiner``). 1 = the paper's setting.
        scheduler: ``_partial_`` LR-scheduler config (per epoch) or ``None``.
        grad_clip: gradient-norm clipping for both (``None`` = off).
        log_images_every_n_steps: sample images (R, x_hat, x_hat - R, ground truth) every N batches.
        recon_net: R's architecture; filled in from the stage-1 checkpoint (used when reloading).
        vgg_cache_mb, vgg_precision: the perceptual loss's target-feature cache and VGG precision (see
            :class:`csmri.lit.gan.AdversarialReconstructionBase`).
        channels_last, compile: how the networks run (see :mod:`csmri.lit.speed`).
    """

    csmri_module = "refinement"
    networks = ("recon", "refinement", "discriminator")

    def __init__(
        self,
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None = None,
        gate_lr_multiplier: float = 1.0,
        scheduler: Mapping[str, Any] | None = None,
        grad_clip: float | None = None,
        log_images_every_n_steps: int = 200,
        recon_net: Mapping[str, Any] | None = None,
        vgg_cache_mb: float = DEFAULT_CACHE_MB,
        vgg_precision: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(gate_lr_multiplier, bool) or not (
            isinstance(gate_lr_multiplier, int | float) and 0 < gate_lr_multiplier < float("inf")
        ):
            raise ConfigError(
                f"model.gate_lr_multiplier must be a positive number, got {gate_lr_multiplier!r}",
                "1 is the paper's setting (lambda learns at the optimiser's lr); e.g. model.gate_lr_multiplier=10",
            )
        net, loss, optimizer, scheduler = plain_configs(net, loss, optimizer, scheduler, default_lr=2e-4)
        recon_net = plain(recon_net) if recon_net is not None else None
        self.recon = self._frozen_recon(net.get("recon_ckpt"), recon_net)
        self.save_hyperparameters(ignore=["recon_net"])
        self.hparams["recon_net"] = self._recon_config

        refine = net["refine"]
        channels = refine.get("channels", "complex")
        n_refined = 2 if channels == "complex" else 1
        refiner = build({**refine["net"], "in_channels": n_refined, "out_channels": n_refined}, "refinement net")
        self.refinement = GatedRefinement(refiner, refine.get("gate_init", 0.0), channels)
        self._build_adversary(net["discriminator"], net.get("perceptual"), loss)
        self.val_psnr_recon = PSNR()
        self.val_correction = RelativeCorrection()

    def _frozen_recon(self, recon_ckpt: str | None, recon_net: Mapping[str, Any] | None) -> nn.Module:
        if recon_net is not None:  # reloading a stage-2 checkpoint: R's weights come with its state dict
            recon, self._recon_config = build(recon_net, "stage-1 network"), dict(recon_net)
        elif not recon_ckpt:
            raise ValueError(
                "stage 2 needs the stage-1 checkpoint: set model.net.recon_ckpt=PATH/checkpoints/best.ckpt"
            )
        else:
            recon, self._recon_config = load_reconstruction_net(recon_ckpt)
        recon.eval()
        for p in recon.parameters():
            p.requires_grad_(False)
        return recon

    def train(self, mode: bool = True) -> RefinementModule:
        super().train(mode)
        self.recon.eval()  # R stays frozen: no batch-norm/dropout updates
        return self

    def base_reconstruction(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """R(x_u) as 2 channels ``(B, 2, H, W)``, without gradient."""
        with torch.no_grad():
            return self.recon(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"])

    def generate(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        base = self.base_reconstruction(batch)
        refined, x_v = self.refinement(base)
        return refined, {"base": base, "x_v": x_v}

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        return self.refinement.parameters()  # V and the gate lambda

    def configure_optimizers(self) -> Any:
        """V's optimiser in two parameter groups, ``refiner`` (V's weights, at the configured learning rate) and
        ``gate`` (lambda, at ``gate_lr_multiplier`` times it), and D's; LR schedules (per epoch) apply to each group."""
        hp = self.hparams
        gate = self.refinement.gate
        opt_g = build_optimizer(hp.optimizer, [p for p in self.refinement.parameters() if p is not gate])
        opt_g.param_groups[0]["name"] = "refiner"
        opt_g.add_param_group({"params": [gate], "lr": opt_g.param_groups[0]["lr"] * hp.gate_lr_multiplier})
        opt_g.param_groups[1]["name"] = GATE_GROUP
        opt_d = build_optimizer(hp.optimizer, self.discriminator.parameters())
        schedulers = [build_scheduler(hp.scheduler, opt) for opt in (opt_g, opt_d)]
        if schedulers[0] is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [{"scheduler": s, "interval": "epoch"} for s in schedulers]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written while lambda shared V's one parameter group resumes into the two groups: lambda
        (that group's first parameter, as ``refinement.parameters()`` lists it) moves to the ``gate`` group, with
        its Adam state, at ``gate_lr_multiplier`` times the group's learning rate."""
        super().on_load_checkpoint(checkpoint)
        states = checkpoint.get("optimizer_states") or []
        if not states or len(states[0].get("param_groups", [])) != 1:
            return
        (group,) = states[0]["param_groups"]
        gate, *refiner = group["params"]
        multiplier = self.hparams.gate_lr_multiplier
        gate_group = {**group, "params": [gate], "lr": group["lr"] * multiplier, "name": GATE_GROUP}
        if "initial_lr" in group:
            gate_group["initial_lr"] = group["initial_lr"] * multiplier
        states[0]["param_groups"] = [{**group, "params": refiner, "name": "refiner"}, gate_group]

    def extra_terms(self, batch, output, extras, target) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"pen": refinement_penalty(extras["x_v"])} if self.normalizer.has_penalty else {}

    def log_training_extras(self, batch_size: int) -> None:
        self.log("train/lambda", self.refinement.gate.detach(), prog_bar=True, batch_size=batch_size)

    def log_validation_extras(self, batch, output, extras, target) -> None:  # type: ignore[override]
        n = target.shape[0]
        self.val_psnr_recon(magnitude(extras["base"]), target)
        self.log("val/psnr_recon", self.val_psnr_recon, batch_size=n)
        self.val_correction(output, extras["base"].float())
        self.log("val/correction", self.val_correction, batch_size=n)
        self.log("val/lambda", self.refinement.gate.detach(), batch_size=n)
        real_logits, _ = self.discriminate(self._discriminator_input(complex_to_channels(batch["target"])))
        fake_logits, _ = self.discriminate(self._discriminator_input(output))
        self.log("val/d_real", torch.sigmoid(real_logits).mean(), batch_size=n)
        self.log("val/d_fake", torch.sigmoid(fake_logits).mean(), batch_size=n)

    def sample_columns(self, batch: Mapping[str, Any], output: torch.Tensor) -> dict[str, torch.Tensor]:
        r, x_hat = magnitude(self.base_reconstruction(batch)[:1])[0], magnitude(output[:1])[0]
        return {
            "zero-filled": batch["zero_filled"][0].abs(),
            "R(x_u)": r,
            "x_hat": x_hat,
            "x_hat - R": x_hat - r,
            "ground truth": batch["target"][0].abs(),
        }
