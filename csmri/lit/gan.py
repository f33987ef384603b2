"""Shared machinery of the adversarially trained reconstruction modules (stage 2, DAGAN, joint).

Manual optimisation: per batch one discriminator step then one generator step, each inside its
optimiser's toggle (so the other network's parameters get no gradients), with the fakes detached and
passed through the experience-replay buffer for D. Subclasses say what the generator is
(:meth:`generate`, :meth:`generator_parameters`) and add their own loss terms
(:meth:`extra_terms`); the common terms are

- ``adv``: non-saturating adversarial loss, ``feat``: feature matching on D's feature maps,
- ``vgg``: perceptual MSE on VGG features of magnitudes,

combined by a :class:`csmri.losses.normalizer.LossNormalizer` (only the terms it weights are computed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from csmri.lit._config import build
from csmri.lit.base import ReconstructionBase
from csmri.lit.checkpoints import restore_left_out_state
from csmri.lit.optim import build_optimizer, build_scheduler
from csmri.lit.precision import check_feature_precision, resolve_feature_precision
from csmri.lit.replay import ReplayBuffer
from csmri.losses.adversarial import DiscriminatorLoss, FeatureMatchingLoss, GeneratorAdversarialLoss
from csmri.losses.config import adversarial_loss
from csmri.losses.normalizer import LossNormalizer
from csmri.losses.perceptual import DEFAULT_CACHE_MB, PerceptualLoss
from csmri.metrics.image import magnitude
from csmri.physics import complex_to_channels
from csmri.progress import training_batch_counter

D_INPUTS = ("magnitude", "complex")


class AdversarialReconstructionBase(ReconstructionBase):
    """Base class: D, its losses, the normaliser, replay, the D/G steps, validation and sample images.

    Args (from the subclass's ``net`` / ``loss`` configs and hyper-parameters):
        discriminator: ``{input: magnitude | complex, replay: {capacity, p}, net: {_target_: ...}}``; ``replay``:
            the experience replay of D's fake inputs (:class:`csmri.lit.replay.ReplayBuffer`, its defaults if unset).
        perceptual: VGG extractor config, or ``None`` when no ``vgg`` term is weighted.
        loss: an :class:`csmri.losses.config.AdversarialLoss` (``normalizer``, ``weights``, ``alpha``,
            ``alpha_target``, ``label_smoothing``; see :class:`LossNormalizer`); other keys are an error.
        vgg_cache_mb: the targets' VGG features kept per slice key, a speed setting
            (:class:`csmri.losses.perceptual.TargetFeatureCache`; 0 = off).
        vgg_precision: ``auto`` | ``32`` | ``bf16``: what the frozen VGG runs in, see
            :func:`csmri.lit.precision.resolve_feature_precision`; resolved when fitting starts.
        optimizer, scheduler: ``_partial_`` configs used for both networks (see :mod:`csmri.lit.optim`).
        grad_clip: gradient-norm clipping (``None`` = off).
        log_images_every_n_steps: sample images every N training batches (0 = only at validation).
    """

    csmri_module = "gan"

    def _build_adversary(
        self, discriminator: Mapping[str, Any], perceptual: Mapping[str, Any] | None, loss: Mapping[str, Any]
    ) -> None:
        self.automatic_optimization = False
        loss = adversarial_loss(loss)
        self.d_input = discriminator.get("input", "magnitude")
        if self.d_input not in D_INPUTS:
            raise ValueError(f"discriminator input must be one of {D_INPUTS}, got {self.d_input!r}")
        d_channels = 1 if self.d_input == "magnitude" else 2
        self.discriminator = build({**discriminator["net"], "in_channels": d_channels}, "discriminator")
        self.normalizer = LossNormalizer(
            mode=loss["normalizer"], weights=loss["weights"], alpha=loss["alpha"], alpha_target=loss["alpha_target"]
        )
        needs_vgg = "vgg" in self.normalizer.term_names
        if needs_vgg and not perceptual:
            raise ValueError("the loss weights a 'vgg' term but the model config has no perceptual extractor")
        self.perceptual = None
        self.vgg_precision = check_feature_precision(self.hparams.get("vgg_precision", "auto"))
        if needs_vgg:
            extractor = build(perceptual, "perceptual feature extractor")
            self.perceptual = PerceptualLoss(extractor, self.hparams.get("vgg_cache_mb", DEFAULT_CACHE_MB))
        self.d_loss = DiscriminatorLoss(loss["label_smoothing"])
        self.adv_loss = GeneratorAdversarialLoss()
        self.feat_loss = FeatureMatchingLoss()
        self.replay = ReplayBuffer(**discriminator.get("replay", {}))
        self._normaliser_ready = False  # set once the normaliser's constants are known (fixed or first step)

    # -- to be provided by subclasses (and :meth:`generate`) -------------------------------------------
    def generator_parameters(self) -> Iterator[nn.Parameter]:
        raise NotImplementedError

    def extra_terms(
        self, batch: Mapping[str, Any], output: torch.Tensor, extras: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Subclass-specific raw loss terms (named as in the normaliser's weights)."""
        return {}

    # -- common API ---------------------------------------------------------------------------------
    @property
    def perceptual_backbone(self) -> str:
        if self.perceptual is None:
            return "none"
        return getattr(self.perceptual.extractor, "backbone", type(self.perceptual.extractor).__name__)

    def perceptual_precision(self, device: str) -> str:
        """What the perceptual loss's VGG runs in on ``device`` (``cpu``/``cuda``): ``bf16``, ``32`` or ``none``."""
        if self.perceptual is None:
            return "none"
        return "bf16" if resolve_feature_precision(self.vgg_precision, device) else "32"

    def run_metadata(self, device: str = "cpu") -> dict[str, Any]:
        """Facts recorded in run_info.json and the logger's config, for a run on ``device``."""
        return {
            "perceptual_backbone": self.perceptual_backbone,
            "perceptual_precision": self.perceptual_precision(device),
        }

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.perceptual is not None:
            self.perceptual.bf16 = self.perceptual_precision(self.device.type) == "bf16"

    def discriminate(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """D's logits and feature maps on ``x``, in fp32 (D itself may run in bf16)."""
        logits, features = self.discriminator(x)
        return logits.float(), [f.float() for f in features]

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

    def generator_terms(
        self, batch: Mapping[str, Any], output: torch.Tensor, extras: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The raw generator loss terms the normaliser weights, and D's logits on ``output``."""
        wanted = set(self.normalizer.term_names)
        fake_logits, fake_features = self.discriminate(self._discriminator_input(output))
        terms = {"adv": self.adv_loss(fake_logits)}
        if "feat" in wanted:
            with torch.no_grad():
                _, real_features = self.discriminate(self._discriminator_input(target))
            terms["feat"] = self.feat_loss(real_features, fake_features)
        if "vgg" in wanted:
            # training targets are fixed per slice key: their features are computed once (TargetFeatureCache)
            terms["vgg"] = self.perceptual(magnitude(output), magnitude(target), keys=batch.get("key"))
        terms.update(self.extra_terms(batch, output, extras, target))
        return terms, fake_logits

    # -- training -------------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """One D step and one G step; returns the step's detached ``train/*`` logs (for callbacks such as
        :class:`csmri.lit.callbacks.TrainingHealth`, which check them without a host-device sync)."""
        opt_g, opt_d = self.optimizers()
        target = complex_to_channels(batch["target"])
        output, extras = self.generate(batch)
        output = output.float()  # losses in fp32 whatever the networks ran in
        n = target.shape[0]

        with self.toggled_optimizer(opt_d):  # D: real vs (replayed) detached fakes
            fake_for_d = self.replay.query(self._discriminator_input(output))
            real_logits, _ = self.discriminate(self._discriminator_input(target))
            fake_logits_d, _ = self.discriminate(fake_for_d)
            loss_d = self.d_loss(real_logits, fake_logits_d)
            self._backward_and_step(opt_d, loss_d)

        with self.toggled_optimizer(opt_g):  # G: the weighted (normalised) terms
            terms, fake_logits = self.generator_terms(batch, output, extras, target)
            if not self._normaliser_ready:  # a Python flag: no host-device sync per step
                if not bool(self.normalizer.initialised):
                    self.normalizer.initialise(terms, reduce=self._reduce_mean)
                self._normaliser_ready = True
            loss_g, normalised = self.normalizer(terms)
            self._backward_and_step(opt_g, loss_g)

        logs = {
            "train/loss_d": loss_d,
            "train/loss_g": loss_g,
            "train/d_real": torch.sigmoid(real_logits).mean(),
            "train/d_fake": torch.sigmoid(fake_logits).mean(),
        }
        logs.update({f"train/{k}": v for k, v in {**terms, **normalised}.items()})
        logs = {k: v.detach() for k, v in logs.items()}
        self.log_dict(logs, batch_size=n)
        self.log_training_extras(n)
        every = self.hparams.log_images_every_n_steps
        if every and training_batch_counter(self.trainer) % every == 0:
            self.log_samples("train", batch, output)
        return logs

    def log_training_extras(self, batch_size: int) -> None:
        """Subclass hook for extra per-step logs (e.g. the gate lambda)."""

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt_g = build_optimizer(hp.optimizer, self.generator_parameters())
        opt_d = build_optimizer(hp.optimizer, self.discriminator.parameters())
        schedulers = [build_scheduler(hp.scheduler, opt) for opt in (opt_g, opt_d)]
        if schedulers[0] is None:
            return [opt_g, opt_d]
        return [opt_g, opt_d], [{"scheduler": s, "interval": "epoch"} for s in schedulers]

    def on_train_epoch_end(self) -> None:
        """Manual optimisation: the LR schedulers (if any) step here, once per epoch."""
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["perceptual_backbone"] = self.perceptual_backbone
        used = "none" if self.perceptual is None else "bf16" if self.perceptual.bf16 else "32"
        checkpoint["perceptual_precision"] = used  # what the VGG ran in (the table's footnote says it)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """An inference-only checkpoint (``best.ckpt``) left out D and the replay buffer: they keep their fresh
        initialisation, so ``load_from_checkpoint`` loads it strictly."""
        super().on_load_checkpoint(checkpoint)
        restore_left_out_state(self, checkpoint)
