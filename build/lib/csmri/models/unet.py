"""A strided-convolution U-Net (pix2pix style), used as the refinement network V of stage 2.

Encoder level ``i`` is a ``k x k`` stride-2 convolution to ``features[i]`` filters (batch norm on every
level but the first, LeakyReLU). The decoder mirrors it with stride-2 transposed convolutions and skip
concatenations; the last transposed convolution maps to ``out_channels`` at full resolution (no norm,
no activation). With ``features = (32, 64, 128)`` the decoder has 64 and 32 filters, as in the paper.
Input height and width must be divisible by ``2 ** len(features)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

INITS = ("orthogonal", "kaiming", "normal")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose batch, instance or none")


class UNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    Args:
        features: encoder filters per level; the decoder uses them in reverse (without the deepest).
        kernel_size: even kernel size of the strided (transposed) convolutions (paper: 4).
        norm: ``batch`` (paper), ``instance`` or ``none``.
        negative_slope: LeakyReLU slope (paper: 0.1).
        init: ``orthogonal`` (paper), ``kaiming`` or ``normal`` (N(0, 0.02)).
        dropout: channel dropout after the deepest decoder levels (0 = none).
        innermost_norm: normalise the deepest encoder level too (off for a 1x1 bottleneck, as in
            pix2pix/DAGAN, where batch statistics over one pixel are meaningless).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        features: Sequence[int] = (32, 64, 128),
        kernel_size: int = 4,
        norm: str = "batch",
        negative_slope: float = 0.1,
        init: str = "orthogonal",
        dropout: float = 0.0,
        innermost_norm: bool = True,
    ) -> None:
        super().__init__()
        features = list(features)
        if not features or kernel_size % 2:
            raise ValueError(f"need >= 1 level and an even kernel size, got {features}, {kernel_size}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
        pad = (kernel_size - 2) // 2
        self.levels = len(features)
        self.down = nn.ModuleList()
        previous = in_channels
        for i, c in enumerate(features):
            level_norm = "none" if i == 0 or (i == len(features) - 1 and not innermost_norm) else norm
            self.down.append(
                nn.Sequential(
                    nn.Conv2d(previous, c, kernel_size, stride=2, padding=pad, bias=level_norm != "batch"),
                    _norm(level_norm, c),
                    nn.LeakyReLU(negative_slope, inplace=True),
                )
            )
            previous = c
        self.up = nn.ModuleList()
        for i, c in enumerate(reversed(features[:-1])):
            layers: list[nn.Module] = [
                nn.ConvTranspose2d(previous, c, kernel_size, stride=2, padding=pad, bias=norm != "batch"),
                _norm(norm, c),
                nn.LeakyReLU(negative_slope, inplace=True),
            ]
            if dropout > 0 and i < 2:
                layers.append(nn.Dropout2d(dropout))
            self.up.append(nn.Sequential(*layers))
            previous = 2 * c  # after concatenating the skip connection
        self.head = nn.ConvTranspose2d(previous, out_channels, kernel_size, stride=2, padding=pad)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                if init == "orthogonal":
                    nn.init.orthogonal_(module.weight)
                elif init == "kaiming":
                    nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                else:
                    nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.levels
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"U-Net with {self.levels} levels needs H and W divisible by {factor}, got {tuple(x.shape)}"
            )
        skips = []
        for down in self.down:
            x = down(x)
            skips.append(x)
        skips.pop()  # the deepest level feeds the decoder directly
        for up in self.up:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.head(x)
