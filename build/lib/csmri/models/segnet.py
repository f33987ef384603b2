"""A classic U-Net (Ronneberger et al. 2015) for semantic segmentation, used by the SIS metric.

Unlike the image networks of :mod:`csmri.models` (2-channel ``[real, imag]`` in and out), this network
takes a real ``(B, in_channels, H, W)`` image — a 1-channel magnitude in csmri, see
:func:`csmri.lit.segmentation.segmentation_input` — and returns class logits ``(B, num_classes, H, W)``.

Level ``i`` is a double ``3 x 3`` convolution (padding 1, batch norm, ReLU) with ``channels[i]`` filters;
levels are joined by ``2 x 2`` max pooling on the way down and by ``2 x 2`` stride-2 transposed
convolutions (or bilinear upsampling followed by a ``1 x 1`` convolution) on the way up, with skip
concatenations; a ``1 x 1`` convolution maps to the logits. Padding keeps the spatial size, so H and W
must be divisible by ``2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

UPSAMPLING = ("transpose", "bilinear")


class DoubleConv(nn.Sequential):
    """``(3x3 conv -> batch norm -> ReLU) x 2``; ``(B, c_in, H, W) -> (B, c_out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def _upsampler(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class SegmentationUNet(nn.Module):
    """Real image ``(B, in_channels, H, W)`` -> class logits ``(B, num_classes, H, W)``.

    Args:
        in_channels: input channels (1: the magnitude image).
        num_classes: output classes including the background (class 0); 2 for a binary structure.
        channels: filters per level, shallowest first; ``len(channels)`` levels, ``len - 1`` poolings.
        upsample: ``transpose`` (2x2 stride-2 transposed convolution) or ``bilinear`` (+ 1x1 convolution).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive filter counts, got {channels}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
        if upsample not in UPSAMPLING:
            raise ValueError(f"unknown upsample {upsample!r}; choose one of {UPSAMPLING}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.levels = len(channels)

        self.encoder = nn.ModuleList()
        previous = in_channels
        for c in channels:
            self.encoder.append(DoubleConv(previous, c))
            previous = c
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(_upsampler(upsample, previous, c))
            self.decoder.append(DoubleConv(2 * c, c))  # upsampled features + skip
            previous = c
        self.head = nn.Conv2d(previous, num_classes, 1)

    @property
    def size_divisor(self) -> int:
        """H and W must be multiples of this (``2 ** (levels - 1)``)."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.is_complex():
            raise ValueError(
                f"SegmentationUNet expects a real (B, {self.in_channels}, H, W) tensor, got "
                f"{'complex' if x.is_complex() else 'real'} {tuple(x.shape)}"
            )
        factor = self.size_divisor
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"SegmentationUNet with {self.levels} levels needs H and W divisible by {factor}, "
                f"got {tuple(x.shape[-2:])}; crop/pad the image or use fewer channels levels"
            )
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the deepest level feeds the decoder directly
        for up, block in zip(self.up, self.decoder, strict=True):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
