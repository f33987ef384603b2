"""RecNet: the cascaded DC-CNN of Schlemper et al. (2017), stage 1 of Seitzer et al. (2018)."""

from __future__ import annotations

import torch
from torch import nn

from csmri.physics.consistency import DataConsistency

ACTIVATIONS = {"leaky_relu", "relu"}


def _activation(name: str, negative_slope: float) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")


class DealiasingBlock(nn.Sequential):
    """``nd`` 3x3 convolutions ``2 -> nf -> ... -> nf -> 2`` with an activation between them."""

    def __init__(self, nd: int, nf: int, activation: str, negative_slope: float) -> None:
        if nd < 2:
            raise ValueError(f"nd (convolutions per block) must be >= 2, got {nd}")
        layers: list[nn.Module] = []
        channels = [2] + [nf] * (nd - 1) + [2]
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            if i < nd - 1:
                layers.append(_activation(activation, negative_slope))
        super().__init__(*layers)


class RecNet(nn.Module):
    """Cascade of ``nc`` de-aliasing CNN blocks, each followed by a data-consistency layer.

    Input/output: 2-channel ``[real, imag]`` images ``(B, 2, H, W)``; ``kspace`` is the measured
    masked centred k-space ``(B, H, W)`` (complex) and ``mask`` its 0/1 mask ``(B, H, W)``.

    Args:
        nc: number of blocks (cascades).
        nd: convolutions per block.
        nf: filters of the hidden convolutions.
        activation: ``leaky_relu`` (default, slope ``negative_slope``) or ``relu``.
        residual: add each block's input to its output (DC-CNN; the paper's released code has none).
        dc_nu: ``None`` for noiseless hard DC, else the weight of the noisy DC form.
    """

    def __init__(
        self,
        nc: int = 3,
        nd: int = 3,
        nf: int = 32,
        activation: str = "leaky_relu",
        negative_slope: float = 0.01,
        residual: bool = True,
        dc_nu: float | None = None,
    ) -> None:
        super().__init__()
        if nc < 1 or nf < 1:
            raise ValueError(f"nc and nf must be >= 1, got nc={nc}, nf={nf}")
        self.residual = residual
        self.blocks = nn.ModuleList(DealiasingBlock(nd, nf, activation, negative_slope) for _ in range(nc))
        self.dc = DataConsistency(dc_nu)
        self._init_weights(activation, negative_slope)

    def _init_weights(self, activation: str, negative_slope: float) -> None:
        """He (Kaiming-normal) initialisation for the chosen activation, zero biases."""
        slope = negative_slope if activation == "leaky_relu" else 0.0
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            out = block(x)
            x = x + out if self.residual else out
            x = self.dc(x, kspace, mask)
        return x
