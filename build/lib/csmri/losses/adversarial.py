"""Adversarial losses: non-saturating GAN loss with one-sided label smoothing, and feature matching.

Discriminator outputs are logits. ``D`` minimises ``BCE(D(x), real_target) + BCE(D(fake), 0)`` with the
real target ``1 - smoothing`` (one-sided label smoothing, paper: 0.1 -> 0.9); the generator minimises
the non-saturating ``BCE(D(x_hat), 1) = -log sigmoid(D(x_hat))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DiscriminatorLoss(nn.Module):
    """``BCE(real_logits, 1 - smoothing) + BCE(fake_logits, 0)``, each averaged over patches and batch."""

    def __init__(self, smoothing: float = 0.1) -> None:
        super().__init__()
        if not 0 <= smoothing < 1:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.real_target = 1.0 - smoothing

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_target))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake


class GeneratorAdversarialLoss(nn.Module):
    """Non-saturating generator loss ``mean(-log sigmoid(D(x_hat)))``."""

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class FeatureMatchingLoss(nn.Module):
    """Mean over D's layers of the mean absolute difference between feature maps of real and refined
    images; the real features are detached (only the generator is pulled towards them)."""

    def forward(self, real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(real_features) != len(fake_features) or not real_features:
            raise ValueError(
                f"need matching non-empty feature lists, got {len(real_features)} and {len(fake_features)}"
            )
        terms = [F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features, strict=True)]
        return torch.stack(terms).mean()
