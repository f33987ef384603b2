"""The segmentation network behind the semantic interpretability score (SIS), as a LightningModule.

It is trained on the **fully-sampled** images (``batch["target"]``) and their label maps; the
undersampling fields the DataModule also simulates are ignored. Training, validation and evaluation
all feed the network through :func:`segmentation_input` — the magnitude of the complex image as one
real channel — so evaluation sees exactly the input format training saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from csmri.config import plain
from csmri.lit._config import build
from csmri.lit.augment import IntensityAugment
from csmri.lit.optim import adam, build_optimizer
from csmri.lit.speed import NetworkSpeedMixin
from csmri.metrics.segmentation import DiceMetric

DEFAULT_NET = {"_target_": "csmri.models.segnet.SegmentationUNet"}
DEFAULT_LOSS = {"_target_": "csmri.losses.segmentation.CEDiceLoss"}


def segmentation_input(image: Tensor) -> Tensor:
    """Complex image ``(B, H, W)`` -> the segmentation network's input ``(B, 1, H, W)`` float32 ``|image|``.

    No rescaling: csmri's ground truth has max magnitude 1 per slice and reconstructions are scored in
    the same units, so a reconstruction that loses signal is seen as such. Real tensors (magnitudes or
    2-channel ``[real, imag]`` images) are refused: convert the latter with
    :func:`csmri.physics.channels_to_complex`.
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"segmentation_input expects a torch.Tensor, got {type(image).__name__}")
    if not image.is_complex() or image.ndim != 3:
        hint = " (a 2-channel [real, imag] image? use csmri.physics.channels_to_complex)" if image.ndim == 4 else ""
        raise ValueError(
            "the segmentation network takes complex images of shape (B, H, W), got "
            f"{'complex' if image.is_complex() else 'real ' + str(image.dtype)} {tuple(image.shape)}{hint}"
        )
    return image.abs().unsqueeze(1).to(torch.float32)


def _random_flips(x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
    """Flip each (image ``(B, 1, H, W)``, label ``(B, H, W)``) pair left-right and up-down with p = 0.5 each."""
    for dim in (-1, -2):
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(dim), x)
        label = torch.where(flip.view(-1, 1, 1), label.flip(dim), label)
    return x, label


class SegmentationModule(NetworkSpeedMixin, L.LightningModule):
    """Trains ``net`` to segment the fully-sampled magnitude image; used frozen by the SIS metric.

    Logged metrics: ``train/loss``, ``val/loss`` and ``val/dice`` — the mean foreground Dice over
    validation slices whose label contains the structure (per foreground class, then averaged).

    Args:
        net: ``{_target_: ..., **kwargs}`` of a network ``(B, 1, H, W) -> (B, num_classes, H, W)`` logits
            that exposes ``num_classes`` (default :class:`csmri.models.segnet.SegmentationUNet`).
        loss: ``{_target_: ..., **kwargs}`` of a loss ``(logits, int64 labels) -> scalar``
            (default :class:`csmri.losses.segmentation.CEDiceLoss`).
        optimizer: ``_partial_`` optimiser config (default Adam, lr 1e-3, betas (0.9, 0.999)).
        augment: random left-right / up-down flips of training slices (off by default: flips change
            the anatomy's orientation, which the structure's position may depend on).
        intensity_augment: ``None`` (off) or the fields of :class:`csmri.lit.augment.IntensityAugment` to change
            from its defaults (``{}``: nnU-Net's standard noise, blur, low-resolution, brightness, contrast and
            gamma augmentation of the training slices).
        channels_last, compile: how the network runs (see :mod:`csmri.lit.speed`).
    """

    networks = ("net",)

    def __init__(
        self,
        net: Mapping[str, Any] = DEFAULT_NET,
        loss: Mapping[str, Any] = DEFAULT_LOSS,
        optimizer: Mapping[str, Any] | None = None,
        augment: bool = False,
        intensity_augment: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        net, loss = plain(net), plain(loss)
        optimizer = plain(optimizer) if optimizer is not None else adam(1e-3, (0.9, 0.999))
        intensity_augment = plain(intensity_augment) if intensity_augment is not None else None
        self.save_hyperparameters()
        self.net = build(net, "net")
        self.num_classes: int = getattr(self.net, "num_classes", 0)
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"the segmentation net must expose num_classes >= 2, got {self.num_classes!r}")
        if getattr(self.net, "in_channels", 1) != 1:
            raise ValueError(
                f"the segmentation net must take 1 input channel (the magnitude image), "
                f"got in_channels={self.net.in_channels}"
            )
        self.loss_fn: nn.Module = build(loss, "loss")
        self.intensity_augment = None if intensity_augment is None else IntensityAugment(**intensity_augment)
        self.val_dice = DiceMetric(classes=None if self.num_classes == 2 else list(range(1, self.num_classes)))

    def forward(self, image: Tensor) -> Tensor:
        """Complex image ``(B, H, W)`` -> class logits ``(B, num_classes, H, W)``."""
        return self.net(segmentation_input(image))

    @torch.no_grad()
    def predict_labels(self, image: Tensor) -> Tensor:
        """Complex image ``(B, H, W)`` -> predicted label map, int64 ``(B, H, W)`` in ``[0, num_classes)``.

        Runs the network in eval mode (batch-norm running statistics) whatever the module's mode, and
        restores the mode afterwards. The result lies on the module's device.
        """
        x = segmentation_input(image).to(self.device)
        was_training = self.net.training
        self.net.eval()
        try:
            return self.net(x).argmax(dim=1)
        finally:
            self.net.train(was_training)

    @torch.no_grad()
    def predict_probabilities(self, image: Tensor) -> Tensor:
        """Complex image ``(B, H, W)`` -> class probabilities ``(B, num_classes, H, W)`` float32 (softmax), in eval
        mode like :meth:`predict_labels`."""
        x = segmentation_input(image).to(self.device)
        was_training = self.net.training
        self.net.eval()
        try:
            return self.net(x).float().softmax(dim=1)
        finally:
            self.net.train(was_training)

    @staticmethod
    def _inputs(batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        if "label" not in batch:
            raise KeyError("segmentation training needs batches with a 'label' map; the dataset provides none")
        return segmentation_input(batch["target"]), batch["label"].long()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x, label = self._inputs(batch)
        if self.hparams.augment:
            x, label = _random_flips(x, label)
        if self.intensity_augment is not None:
            x = self.intensity_augment(x)
        loss = self.loss_fn(self.net(x).float(), label)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        x, label = self._inputs(batch)
        logits = self.net(x).float()
        loss = self.loss_fn(logits, label)
        self.val_dice.update(logits.argmax(dim=1), label)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        self.log("val/dice", self.val_dice, prog_bar=True, batch_size=x.shape[0])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["csmri_module"] = "segmentation"

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.hparams.optimizer, self.net.parameters())


class SegmenterEnsemble:
    """Several trained segmentation nets as one segmenter: the argmax of their mean class probabilities.

    SIS depends on how one frozen segmentation net reacts to reconstruction artefacts, and nets trained alike
    (same data, other seeds, same Dice on fully-sampled images) react very differently; averaging a few narrows
    that dependence on one net's seed but need not remove it (on the embedded phantom, ensembles of three such nets
    still score zero-filled images anywhere from SIS 0.02 to 0.45: experiments/seitzer2018/sis_instrument.md). Same
    interface as :meth:`SegmentationModule.predict_labels`.
    """

    def __init__(self, members: list[SegmentationModule]) -> None:
        if not members:
            raise ValueError("a segmenter ensemble needs at least one segmentation net")
        classes = {m.num_classes for m in members}
        if len(classes) != 1:
            raise ValueError(f"the segmentation nets predict different numbers of classes: {sorted(classes)}")
        self.members = members

    def to(self, device: torch.device | str) -> SegmenterEnsemble:
        self.members = [m.to(device) for m in self.members]
        return self

    def __len__(self) -> int:
        return len(self.members)

    @torch.no_grad()
    def predict_labels(self, image: Tensor) -> Tensor:
        """Complex image ``(B, H, W)`` -> label map int64 ``(B, H, W)``: argmax of the members' mean probabilities."""
        return self.predict_labels_and_members(image)[0]

    @torch.no_grad()
    def predict_labels_and_members(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Complex image ``(B, H, W)`` -> the ensemble's label map ``(B, H, W)`` and each member's own ``(K, B, H, W)``
        (int64), from one pass of each net."""
        probabilities = torch.stack([m.predict_probabilities(image) for m in self.members])  # (K, B, C, H, W)
        return probabilities.mean(dim=0).argmax(dim=1), probabilities.argmax(dim=2)
