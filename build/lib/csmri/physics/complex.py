"""Conversion between complex tensors (physics) and 2-channel real tensors (networks)."""

from __future__ import annotations

import torch


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, H, W)`` -> real ``(B, 2, H, W)`` with channels ``[real, imag]``."""
    if not torch.is_complex(x):
        raise ValueError(f"expected a complex tensor, got dtype {x.dtype}")
    return torch.stack((x.real, x.imag), dim=-3)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, H, W)`` with channels ``[real, imag]`` -> complex ``(B, H, W)``."""
    if torch.is_complex(x) or x.ndim < 3 or x.shape[-3] != 2:
        raise ValueError(f"expected a real tensor with 2 channels at dim -3, got {tuple(x.shape)} {x.dtype}")
    return torch.complex(x.select(-3, 0), x.select(-3, 1))
