"""Cross-entropy + soft Dice loss for semantic segmentation (the SIS segmentation network)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def soft_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0, include_background: bool = False) -> Tensor:
    """``1 - mean_c soft Dice_c`` of ``softmax(logits)`` against one-hot ``target`` -> scalar.

    Soft Dice of class ``c``: ``(2·Σ p_c·t_c + smooth) / (Σ p_c + Σ t_c + smooth)``, sums over the whole
    batch (B, H, W) so slices without the structure do not make it undefined; averaged over classes
    ``1..C-1`` (or ``0..C-1`` with ``include_background``). ``logits`` ``(B, C, H, W)``, ``target`` int64
    ``(B, H, W)`` with values in ``[0, C)``.
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    if not include_background:
        dice = dice[1:]
    return 1 - dice.mean()


class CEDiceLoss(nn.Module):
    """``ce_weight · CE(logits, target) + dice_weight · soft_dice_loss(logits, target)``.

    Args:
        ce_weight, dice_weight: weights of the two terms (>= 0, not both 0).
        class_weights: optional per-class weights of the cross-entropy (length ``num_classes``).
        smooth: additive smoothing of the soft Dice (> 0 keeps it defined on empty batches).
        include_background: also average the Dice over class 0 (default: foreground classes only).

    Call with ``logits`` ``(B, C, H, W)`` (C >= 2) and an integer ``target`` ``(B, H, W)`` in ``[0, C)``.
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
        smooth: float = 1.0,
        include_background: bool = False,
    ) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(f"need ce_weight, dice_weight >= 0 and not both 0, got {ce_weight}, {dice_weight}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.include_background = include_background
        weights = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        check_segmentation_pair(logits, target)
        target = target.long()
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise ValueError(f"class_weights has {self.class_weights.numel()} entries for {logits.shape[1]} classes")
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), target, weight=self.class_weights)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target, self.smooth, self.include_background)
        return loss


def check_segmentation_pair(logits: Tensor, target: Tensor) -> None:
    """Raise a ``ValueError`` unless ``logits`` is ``(B, C, H, W)`` and ``target`` int ``(B, H, W)`` in ``[0, C)``."""
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (B, C, H, W) with C >= 2 classes, got {tuple(logits.shape)}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target must be (B, H, W) = {(logits.shape[0], *logits.shape[2:])}, got {tuple(target.shape)}"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
        raise ValueError(
            f"target labels must lie in [0, {logits.shape[1]}) for {logits.shape[1]} classes, "
            f"got [{int(target.min())}, {int(target.max())}]; set the model's num_classes"
        )
