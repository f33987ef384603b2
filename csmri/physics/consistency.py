"""Data-consistency (DC) operation of the DC-CNN (Schlemper et al. 2017).

For an image estimate ``x`` with k-space ``k = F x``, measured masked k-space ``k0`` and mask ``m``:

- noiseless (``nu=None``): hard replacement ``k_dc = (1 - m) k + m k0``;
- noisy (``nu >= 0``): weighted ``k_dc = (1 - m) k + m (k + nu k0) / (1 + nu)``; ``nu -> inf``
  approaches hard replacement, ``nu = 0`` ignores the measurement.

The result is ``F^H k_dc`` with the centred orthonormal FFT of :mod:`csmri.physics.fft`.
"""

from __future__ import annotations

import torch
from torch import nn

from csmri.physics.complex import channels_to_complex, complex_to_channels
from csmri.physics.fft import fft2c, ifft2c
from csmri.physics.undersample import check_mask


def data_consistency(
    image: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor, nu: float | None = None
) -> torch.Tensor:
    """Apply DC to complex ``image (B, H, W)`` given measured ``kspace (B, H, W)`` and ``mask``."""
    if not torch.is_complex(kspace):
        raise ValueError(f"measured k-space must be complex, got dtype {kspace.dtype}")
    check_mask(mask, kspace)
    k = fft2c(image)
    if k.shape != kspace.shape:
        raise ValueError(f"image k-space shape {tuple(k.shape)} != measured k-space {tuple(kspace.shape)}")
    mask = mask.to(k.real.dtype)
    if nu is None:
        k_dc = (1 - mask) * k + mask * kspace
    else:
        if nu < 0:
            raise ValueError(f"nu must be >= 0 (or None for hard replacement), got {nu}")
        k_dc = (1 - mask) * k + mask * (k + nu * kspace) / (1 + nu)
    return ifft2c(k_dc)


class DataConsistency(nn.Module):
    """DC layer at the network boundary: ``(B, 2, H, W)`` real channels in and out.

    Args:
        nu: ``None`` for noiseless hard replacement, else the noise weight of the weighted form.
    """

    def __init__(self, nu: float | None = None) -> None:
        super().__init__()
        if nu is not None and nu < 0:
            raise ValueError(f"nu must be >= 0 (or None for hard replacement), got {nu}")
        self.nu = nu

    def forward(self, x: torch.Tensor, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` in any float dtype (bf16 under mixed precision) -> fp32 ``(B, 2, H, W)``; autocast is off inside,
        so the FFTs and the measured k-space stay complex64 whatever the networks run in."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            image = channels_to_complex(x.float())
            return complex_to_channels(data_consistency(image, kspace, mask, self.nu))

    def extra_repr(self) -> str:
        return "hard" if self.nu is None else f"nu={self.nu}"
