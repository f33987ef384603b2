"""Generators trained from scratch jointly with a discriminator: DAGAN and the joint baseline.

These are the comparisons the paper argues against: the reconstruction network itself is trained with
image/k-space fidelity terms and visual terms at once (no frozen MSE stage). Besides the common
``adv``/``feat``/``vgg`` terms (see :mod:`csmri.lit.gan`) the loss can weight

- ``mse``: mean squared error of the 2-channel image,
- ``nmse``: DAGAN's per-image ``||x_hat - x|| / ||x||`` on magnitudes mapped to [-1, 1], averaged over images,
- ``freq``: DAGAN's mean squared difference of unnormalised ``|FFT2|`` of the [0, 1] magnitudes

(see :mod:`csmri.losses.dagan`; DAGAN's VGG term is the common ``vgg`` term with the model's perceptual
extractor set to :class:`csmri.losses.dagan.DAGANVGGFeatures`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from csmri.errors import ConfigError
from csmri.lit._config import build
from csmri.lit.gan import AdversarialReconstructionBase
from csmri.lit.optim import plain_configs
from csmri.losses.dagan import dagan_freq, dagan_nmse, dagan_nmse_01
from csmri.losses.perceptual import DEFAULT_CACHE_MB
from csmri.physics import complex_to_channels


def image_terms(output: torch.Tensor, target: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
    """The fidelity terms among ``{mse, nmse, freq}`` in ``wanted``, for 2-channel images."""
    terms = {}
    if "mse" in wanted:
        terms["mse"] = F.mse_loss(output, target)
    if "nmse" in wanted:
        terms["nmse"] = dagan_nmse(output, target)
    if "freq" in wanted:
        terms["freq"] = dagan_freq(output, target)
    return terms


def with_image_size(net: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    """``net`` with ``image_size`` as the ``size`` of its generator and discriminator ``net`` where it is null."""
    net = {**net, "generator": dict(net["generator"])}
    if isinstance(net.get("discriminator"), Mapping):
        net["discriminator"] = {**net["discriminator"], "net": dict(net["discriminator"]["net"])}
    for what, config in (
        ("generator", net["generator"]),
        ("discriminator.net", net.get("discriminator", {}).get("net")),
    ):
        if isinstance(config, dict) and "size" in config and config["size"] is None:
            if image_size is None:
                raise ConfigError(
                    f"model.net.{what}.size is null and no image size was given",
                    "set model.image_size=H (the training images' height) or the network's size",
                )
            config["size"] = int(image_size)
    return net


class AdversarialReconstructionModule(AdversarialReconstructionBase):
    """Trains ``generator`` (called ``generator(x_u, kspace, mask)`` on 2-channel images) and D jointly.

    Args:
        net: ``generator`` config, ``discriminator`` ``{input, net}``, ``perceptual`` (or null).
        loss: an :class:`csmri.losses.config.AdversarialLoss` with ``weights`` over adv, feat, vgg, mse, nmse, freq
            and ``alpha`` null.
        optimizer, scheduler, grad_clip, log_images_every_n_steps, vgg_cache_mb, vgg_precision: as in
            :class:`AdversarialReconstructionBase`.
        image_size: the training images' height H, filled into the ``size`` of the generator and of D's ``net`` where
            their configs leave it null (networks whose shape follows the image, e.g. DAGAN's); the filled configs
            are what the checkpoint keeps.
        channels_last, compile: how the networks run (see :mod:`csmri.lit.speed`).
    """

    csmri_module = "adversarial"
    networks = ("generator", "discriminator")

    def __init__(
        self,
        net: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        grad_clip: float | None = None,
        log_images_every_n_steps: int = 200,
        vgg_cache_mb: float = DEFAULT_CACHE_MB,
        vgg_precision: str = "auto",
        image_size: int | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        net, loss, optimizer, scheduler = plain_configs(net, loss, optimizer, scheduler, default_lr=1e-4)
        net = with_image_size(net, image_size)
        self.save_hyperparameters()
        self.generator = build(net["generator"], "generator")
        self._build_adversary(net["discriminator"], net.get("perceptual"), loss)

    def generate(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.generator(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"]), {}

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        return self.generator.parameters()

    def log_validation_extras(self, batch, output, extras, target) -> None:  # type: ignore[override]
        """``val/nmse``: DAGAN's model-selection metric, the per-image root NMSE of the magnitudes in [0, 1]
        (its ``nmse_0_1``, :func:`csmri.losses.dagan.dagan_nmse_01`), averaged over images."""
        self.log("val/nmse", dagan_nmse_01(output, batch["target"]), sync_dist=True, batch_size=target.shape[0])

    def extra_terms(self, batch, output, extras, target) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return image_terms(output, target, set(self.normalizer.term_names))
