"""Simulated acquisition: undersampled (optionally noisy) k-space and zero-filled reconstruction."""

from __future__ import annotations

import torch

from csmri.physics.fft import fft2c, ifft2c


def check_mask(mask: torch.Tensor, kspace: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``mask`` is real and broadcasts to ``kspace``'s shape."""
    if torch.is_complex(mask):
        raise ValueError("the sampling mask must be real (0/1), got a complex tensor")
    try:
        broadcast = torch.broadcast_shapes(mask.shape, kspace.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != kspace.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match k-space shape {tuple(kspace.shape)}")


def undersample(
    image: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Masked centred k-space ``mask * (F x + eps)`` of complex images ``(B, H, W)``.

    ``eps`` is complex white Gaussian noise with standard deviation ``noise_std`` per real component
    (0 = noiseless). Unsampled entries are exactly zero.
    """
    kspace = fft2c(image)
    check_mask(mask, kspace)
    if noise_std > 0:
        noise = torch.randn(kspace.shape, dtype=kspace.dtype, device=kspace.device, generator=generator)
        # complex randn has unit variance split over real and imag; rescale to noise_std per component
        kspace = kspace + noise * (noise_std * 2**0.5)
    return kspace * mask


def zero_filled(kspace: torch.Tensor) -> torch.Tensor:
    """Zero-filled reconstruction ``x_u = F^H y`` of masked centred k-space ``(B, H, W)``."""
    return ifft2c(kspace)
