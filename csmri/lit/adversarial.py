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

from csmri.lit._config import build
from csmri.lit.gan import AdversarialReconstructionBase
from csmri.lit.optim import plain_configs
from csmri.losses.dagan import dagan_freq, dagan_nmse, dagan_nmse_01
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


class AdversarialReconstructionModule(AdversarialReconstructionBase):
    """Trains ``generator`` (called ``generator(x_u, kspace, mask)`` on 2-channel images) and D jointly.

    Args:
        net: ``generator`` config, ``discriminator`` ``{input, net}``, ``perceptual`` (or null).
        loss: ``normalizer`` (mode), ``weights`` over adv, feat, vgg, mse, nmse, freq, ``alpha`` (null),
            ``label_smoothing``, ``replay``.
        optimizer, scheduler, grad_clip, log_images_every_n_steps: as in :class:`AdversarialReconstructionBase`.
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
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        net, loss, optimizer, scheduler = plain_configs(net, loss, optimizer, scheduler, default_lr=1e-4)
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
