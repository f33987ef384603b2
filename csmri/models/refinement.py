"""The gated visual refinement of stage 2: ``x_hat = R + lambda * V(R)`` in a per-image scaled range."""

from __future__ import annotations

import torch
from torch import nn

CHANNEL_MODES = ("complex", "real_only")


class GatedRefinement(nn.Module):
    """Adds a gated refinement ``V`` to a base reconstruction ``R`` (2-channel ``(B, 2, H, W)``).

    ``R`` is scaled per image to (-1, 1) by ``s = max |R|`` over its real and imaginary channels; ``V``
    sees ``R / s`` and the refined image is ``unscale(R / s + gate * V(R / s)) = R + s * gate * V(R / s)``
    — written in the second form so that ``gate = 0`` returns ``R`` bit-exactly.

    Args:
        refiner: ``V``; maps ``C -> C`` channels with ``C = 2`` (``complex``) or ``1`` (``real_only``).
        gate_init: initial value of the trainable scalar gate lambda (paper: 0).
        channels: ``complex`` refines both channels; ``real_only`` (the paper's released code) refines
            the real channel and passes the imaginary one through.
    """

    def __init__(self, refiner: nn.Module, gate_init: float = 0.0, channels: str = "complex") -> None:
        super().__init__()
        if channels not in CHANNEL_MODES:
            raise ValueError(f"refine channels must be one of {CHANNEL_MODES}, got {channels!r}")
        self.refiner = refiner
        self.gate = nn.Parameter(torch.tensor(float(gate_init)))
        self.channels = channels

    @property
    def refined_channels(self) -> int:
        return 2 if self.channels == "complex" else 1

    @staticmethod
    def image_scale(base: torch.Tensor) -> torch.Tensor:
        """``s = max |R|`` per image over both channels, ``(B, 1, 1, 1)`` (at least 1e-8)."""
        return base.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)

    def forward(self, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(x_hat, x_v)``: the refined image ``(B, 2, H, W)`` in ``R``'s range and ``V``'s
        output before the gate (in the scaled range), used by the penalty ``mean |x_v|``."""
        scale = self.image_scale(base)
        scaled = base / scale
        if self.channels == "complex":
            x_v = self.refiner(scaled)
            return base + scale * self.gate * x_v, x_v
        x_v = self.refiner(scaled[:, :1])
        return torch.cat([base[:, :1] + scale * self.gate * x_v, base[:, 1:]], dim=1), x_v
