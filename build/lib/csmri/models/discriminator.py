"""PatchGAN discriminator of stage 2 (and the joint baseline)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Fully convolutional discriminator returning a map of patch logits and its feature maps.

    Layer ``i``: ``4 x 4`` convolution to ``features[i]`` filters with stride ``strides[i]``, batch
    norm (not on the first layer), LeakyReLU(``negative_slope``), and channel-wise dropout
    (``Dropout2d(dropout)``) on the last ``dropout_layers`` layers. A ``3 x 3`` convolution maps to
    one logit per patch. Weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02).
    Paper: features 64, 128, 256, 512, 1024, 1024; strides 2, 2, 2, 2, 2, 1; slope 0.2; p = 0.5 on 3.

    Input: ``(B, in_channels, H, W)`` — a magnitude image by default (``in_channels = 1``).
    Output: ``(logits (B, 1, h, w), [feature map of every layer])``. Needs ``H, W >= 2 ** (#stride-2)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        features: Sequence[int] = (64, 128, 256, 512, 1024, 1024),
        strides: Sequence[int] = (2, 2, 2, 2, 2, 1),
        negative_slope: float = 0.2,
        dropout: float = 0.5,
        dropout_layers: int = 3,
    ) -> None:
        super().__init__()
        if len(features) != len(strides) or not features:
            raise ValueError(f"features and strides must have the same non-zero length, got {features}, {strides}")
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f"strides must be 1 or 2, got {strides}")
        self.min_size = 2 ** sum(1 for s in strides if s == 2)
        self.layers = nn.ModuleList()
        previous = in_channels
        for i, (c, stride) in enumerate(zip(features, strides, strict=True)):
            layer: list[nn.Module] = []
            if stride == 1:  # keep the size with an even kernel: pad 1 before, 2 after
                layer.append(nn.ZeroPad2d((1, 2, 1, 2)))
            layer.append(nn.Conv2d(previous, c, 4, stride=stride, padding=1 if stride == 2 else 0, bias=i == 0))
            if i > 0:
                layer.append(nn.BatchNorm2d(c))
            layer.append(nn.LeakyReLU(negative_slope, inplace=True))
            if i >= len(features) - dropout_layers and dropout > 0:
                layer.append(nn.Dropout2d(dropout))
            self.layers.append(nn.Sequential(*layer))
            previous = c
        self.classifier = nn.Conv2d(previous, 1, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"discriminator input must be at least {self.min_size}x{self.min_size}, got {tuple(x.shape)}"
            )
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return self.classifier(x), features
