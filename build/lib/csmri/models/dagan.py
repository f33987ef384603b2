"""DAGAN (Yang et al., IEEE TMI 2018): residual U-Net generator and global discriminator.

DAGAN's generator at 256^2 has 8 stride-2 ``4 x 4`` convolutions down to a 1 x 1 bottleneck (filters
64, 128, 256, 512, 512, 512, 512, 512) and 8 transposed convolutions up with skip connections, plus
"refinement learning": the output is added to the zero-filled input. Here the depth follows the image
size, ``log2(min(H, W))`` levels (8 at 256^2, 7 at 128^2, 6 at 64^2), so the bottleneck is always 1 x 1;
the deepest level has no batch norm (as in pix2pix). Images are 2-channel ``[real, imag]``.

The discriminator is global: stride-2 ``4 x 4`` convolutions (64, 128, ... doubling up to
``max_features``) down to 4 x 4, then a linear layer to one logit per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from csmri.models.unet import UNet

DAGAN_FEATURES = (64, 128, 256, 512, 512, 512, 512, 512)


def dagan_depth(size: int) -> int:
    """Number of stride-2 levels for a ``size x size`` image: ``log2(size)`` (needs a power of two >= 8)."""
    depth = int(math.log2(size)) if size > 0 else 0
    if size < 8 or 2**depth != size:
        raise ValueError(f"DAGAN needs a power-of-two image size >= 8, got {size}")
    return depth


class DAGANGenerator(nn.Module):
    """``x_hat = x_u + tanh(U(x_u))`` with a U-Net ``U`` whose depth follows the image size.

    ``forward(x, kspace=None, mask=None)`` takes 2-channel ``(B, 2, H, W)`` zero-filled images (k-space
    and mask are accepted for a uniform generator interface and unused: DAGAN has no data consistency).
    """

    def __init__(self, size: int = 256, features: tuple[int, ...] = DAGAN_FEATURES, residual: bool = True) -> None:
        super().__init__()
        depth = dagan_depth(size)
        levels = list(features[:depth]) + [features[-1]] * max(0, depth - len(features))
        self.size, self.residual = size, residual
        self.unet = UNet(
            2, 2, levels, kernel_size=4, norm="batch", negative_slope=0.2, init="normal", innermost_norm=False
        )

    def forward(
        self, x: torch.Tensor, kspace: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"DAGANGenerator was built for {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        out = torch.tanh(self.unet(x))
        return x + out if self.residual else out


class GlobalDiscriminator(nn.Module):
    """``(B, C, H, W) -> (logits (B, 1), [feature maps])``: strided convolutions to 4 x 4, then linear."""

    def __init__(
        self,
        in_channels: int = 1,
        size: int = 256,
        base: int = 64,
        max_features: int = 2048,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        depth = dagan_depth(size) - 2
        self.size = size
        self.layers = nn.ModuleList()
        previous = in_channels
        for i in range(depth):
            c = min(base * 2**i, max_features)
            self.layers.append(
                nn.Sequential(
                    nn.Conv2d(previous, c, 4, stride=2, padding=1, bias=i == 0),
                    nn.BatchNorm2d(c) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(negative_slope, inplace=True),
                )
            )
            previous = c
        self.classifier = nn.Linear(previous * 16, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"GlobalDiscriminator was built for {self.size}x{self.size}, got {tuple(x.shape[-2:])}")
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.classifier(x.flatten(1)), features
