"""Typed configs of the training losses: dataclass structured configs registered in Hydra's ConfigStore.

Each loss config of ``csmri/conf/loss`` is one of these, so its defaults are written once (here) and a key the
dataclass does not declare is rejected when the config is composed (``loss.alpha_targt=0.2`` and
``+loss.alpha_targt=0.2`` alike) or when a module receives it from Python (:func:`adversarial_loss`).

- ``loss=mse`` | ``l1`` | ``ce_dice``: ``_target_`` losses on network outputs (stage 1, the autoencoder of
  :mod:`csmri.lit.perceptual`, the segmentation network), registered here under group ``loss``.
- ``loss=visual`` | ``visual_released`` | ``joint`` | ``dagan``: :class:`AdversarialLoss`, the generator loss of the
  adversarially trained modules; their YAML files (``csmri/conf/loss``) extend the schema ``schema/loss/adversarial``
  and set what differs from its defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from csmri.errors import ConfigError


@dataclass
class AdversarialLoss:
    """The generator loss of stage 2, the joint baseline and DAGAN (:class:`csmri.losses.normalizer.LossNormalizer`)::

        L = sum_k weights[k] * L_k / scale_k + alpha * L_pen

    Attributes:
        normalizer: ``first_step`` (paper: ``scale_k`` = the term at the first iteration) | ``fixed`` (scale 1).
        weights: ``{term: multiplier}``, in the order the terms are summed; terms: ``adv``, ``feat``, ``vgg`` (every
            module), ``mse``, ``nmse``, ``freq`` (joint, DAGAN). A weight of 0 drops the term. No default: each loss
            names its terms.
        alpha: weight of the refinement penalty ``L_pen`` (stage 2): a number, ``auto`` (``alpha_target / L_pen`` at
            the first iteration) or null (no penalty).
        alpha_target: ``alpha * L_pen`` at the first iteration when ``alpha`` is ``auto`` (paper: 0.1).
        label_smoothing: one-sided label smoothing of D's real target (``1 - label_smoothing``; paper: 0.1).
    """

    normalizer: str = "first_step"
    weights: dict[str, float] = MISSING
    alpha: Any = "auto"
    alpha_target: float = 0.1
    label_smoothing: float = 0.1


@dataclass
class MSELoss:
    """Mean squared error (``torch.nn.MSELoss``): stage 1 on 2-channel ``[real, imag]`` images."""

    _target_: str = "torch.nn.MSELoss"


@dataclass
class L1Loss:
    """Mean absolute error (``torch.nn.L1Loss``): the VGG autoencoder's reconstruction loss."""

    _target_: str = "torch.nn.L1Loss"


@dataclass
class CEDiceLoss:
    """Cross-entropy + soft Dice over the foreground classes (:class:`csmri.losses.segmentation.CEDiceLoss`)."""

    _target_: str = "csmri.losses.segmentation.CEDiceLoss"
    ce_weight: float = 1.0
    dice_weight: float = 1.0
    class_weights: Any = None  # per-class cross-entropy weights, length num_classes (null: equal)
    smooth: float = 1.0  # additive smoothing of the soft Dice
    include_background: bool = False  # average the Dice over class 0 too


def register_configs() -> None:
    """Register the loss configs in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="schema/loss", name="adversarial", node=AdversarialLoss)
    for name, node in (("mse", MSELoss), ("l1", L1Loss), ("ce_dice", CEDiceLoss)):
        store.store(group="loss", name=name, node=node)


def adversarial_loss(config: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """``config`` checked against :class:`AdversarialLoss`, with its defaults filled in, as a plain dict.

    Raises :class:`csmri.errors.ConfigError` (one line) for a key the schema does not declare or a value of the
    wrong type.
    """
    schema = OmegaConf.structured(AdversarialLoss)
    try:
        merged = OmegaConf.merge(schema, config)
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except Exception as err:  # omegaconf's ConfigKeyError / ValidationError / MissingMandatoryValue
        key = getattr(err, "full_key", "") or ""
        first = str(err).splitlines()[0]
        raise ConfigError(
            f"bad loss config{f' key `loss.{key}`' if key else ''}: {first}",
            f"the keys of an adversarial loss are {', '.join(AdversarialLoss.__dataclass_fields__)} "
            "(csmri.losses.config.AdversarialLoss)",
        ) from err
