"""Orthonormal, centred 2-D Fourier transforms over the last two dimensions.

Convention: k-space is *centred* — the zero frequency sits at index ``(H // 2, W // 2)``.
``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``, so the transform is unitary
(Parseval: ``||fft2c(x)|| == ||x||``) and ``ifft2c(fft2c(x)) == x``. Masks, data consistency,
DLMRI and plots all use this convention.
"""

from __future__ import annotations

import torch

_DIMS = (-2, -1)


def _check_complex(x: torch.Tensor, name: str) -> None:
    if not torch.is_complex(x):
        raise ValueError(f"{name} expects a complex tensor (..., H, W), got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} expects at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Image ``(..., H, W)`` complex -> centred k-space ``(..., H, W)``, orthonormal."""
    _check_complex(image, "fft2c")
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred k-space ``(..., H, W)`` complex -> image ``(..., H, W)``, orthonormal."""
    _check_complex(kspace, "ifft2c")
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)
