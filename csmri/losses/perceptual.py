"""Perceptual (VGG) loss: MSE between VGG-19 feature maps of magnitude images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PerceptualLoss(nn.Module):
    """``mean((f(|x_hat|) - f(|x|))^2)`` with a frozen feature extractor ``f`` (e.g. VGGFeatures).

    Inputs are magnitude images ``(B, H, W)`` in [0, ~1]; the target's features carry no gradient.
    """

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, pred_magnitude: torch.Tensor, target_magnitude: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.extractor(target_magnitude).float()
        return F.mse_loss(self.extractor(pred_magnitude).float(), target_features)  # fp32 even if VGG ran in bf16


def refinement_penalty(x_v: torch.Tensor) -> torch.Tensor:
    """``L_pen = mean |x_V|``: L1 size of the refinement network's output before the gate."""
    return x_v.abs().mean()
