"""The centred orthonormal 2-D FFT and data consistency over **real** tensors, for exporters without complex dtypes.

ONNX has no complex tensors, so for a fixed image size ``(H, W)`` the transform is written as matrix products:
``fft2c(x) = F_H x F_W^T`` where ``F_N`` is the ``N x N`` matrix of the centred orthonormal 1-D DFT
``fftshift(fft(ifftshift(.), norm="ortho"))`` — the shifts are permutations, folded into the matrix (it is built by
transforming the identity with :func:`torch.fft.fft`). ``F_N`` is unitary, so the inverse is ``F_N^H``. Complex
values travel as separate real and imaginary tensors ``(..., H, W)``; images at network boundaries as 2 channels
``(B, 2, H, W) = [real, imag]``, as everywhere in csmri. Agrees with :func:`csmri.physics.fft2c` to ~1e-6 (fp32).
Cost ``O(HW(H + W))`` instead of ``O(HW log HW)``: fine for the sizes MRI uses (up to ~512).
"""

from __future__ import annotations

import torch
from torch import nn


def centred_dft_matrix(n: int, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real, imag)`` float32 ``(n, n)`` of the centred orthonormal (inverse) DFT: ``y = M @ x`` along an axis."""
    if n < 1:
        raise ValueError(f"DFT size must be >= 1, got {n}")
    eye = torch.eye(n, dtype=torch.complex128)
    transform = torch.fft.ifft if inverse else torch.fft.fft
    matrix = torch.fft.fftshift(transform(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)
    return matrix.real.float().contiguous(), matrix.imag.float().contiguous()


def _complex_matmul(
    ar: torch.Tensor, ai: torch.Tensor, br: torch.Tensor, bi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return ar @ br - ai @ bi, ar @ bi + ai @ br


class RealFFT2c(nn.Module):
    """Centred orthonormal 2-D (inverse) FFT of ``(real, imag)`` tensors ``(..., H, W)`` for one fixed size."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        for name, n, inverse in [("h", height, False), ("w", width, False), ("ih", height, True), ("iw", width, True)]:
            real, imag = centred_dft_matrix(n, inverse)
            self.register_buffer(f"{name}_real", real, persistent=False)
            self.register_buffer(f"{name}_imag", imag, persistent=False)

    def _transform(self, real, imag, left_r, left_i, right_r, right_i):  # noqa: ANN001 - F_H x F_W^T
        real, imag = _complex_matmul(left_r, left_i, real, imag)
        return _complex_matmul(real, imag, right_r.transpose(0, 1), right_i.transpose(0, 1))

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image -> centred k-space."""
        return self._transform(real, imag, self.h_real, self.h_imag, self.w_real, self.w_imag)

    def inverse(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred k-space -> image."""
        return self._transform(real, imag, self.ih_real, self.ih_imag, self.iw_real, self.iw_imag)

    def extra_repr(self) -> str:
        return f"{self.height}x{self.width}"


class RealDataConsistency(nn.Module):
    """:class:`csmri.physics.DataConsistency` over real tensors: ``x (B, 2, H, W)``, measured k-space as
    ``k_real, k_imag (B, H, W)`` and ``mask (B, H, W)`` -> ``(B, 2, H, W)``; ``nu=None`` is hard replacement."""

    def __init__(self, fft: RealFFT2c, nu: float | None = None) -> None:
        super().__init__()
        self.fft, self.nu = fft, nu

    def forward(self, x: torch.Tensor, k_real: torch.Tensor, k_imag: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kr, ki = self.fft(x[:, 0], x[:, 1])
        if self.nu is None:
            kr, ki = (1 - mask) * kr + mask * k_real, (1 - mask) * ki + mask * k_imag
        else:
            kr = (1 - mask) * kr + mask * (kr + self.nu * k_real) / (1 + self.nu)
            ki = (1 - mask) * ki + mask * (ki + self.nu * k_imag) / (1 + self.nu)
        real, imag = self.fft.inverse(kr, ki)
        return torch.stack((real, imag), dim=1)
