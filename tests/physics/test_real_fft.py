"""The real-tensor FFT and DC used for export agree with the complex physics."""

import pytest
import torch

from csmri.physics import data_consistency, fft2c, ifft2c
from csmri.physics.real_fft import RealDataConsistency, RealFFT2c


@pytest.mark.parametrize("shape", [(64, 64), (48, 40), (7, 10)])
def test_real_fft_matches_fft2c(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, *shape, dtype=torch.complex64, generator=g)
    fft = RealFFT2c(*shape)
    kr, ki = fft(x.real, x.imag)
    torch.testing.assert_close(torch.complex(kr, ki), fft2c(x), atol=1e-5, rtol=0)
    ir, ii = fft.inverse(x.real, x.imag)
    torch.testing.assert_close(torch.complex(ir, ii), ifft2c(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("nu", [None, 0.5])
def test_real_dc_matches_data_consistency(nu):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 32, 32, dtype=torch.complex64, generator=g)
    mask = (torch.rand(2, 32, 1, generator=g) > 0.6).float().expand(2, 32, 32)
    kspace = fft2c(torch.randn(2, 32, 32, dtype=torch.complex64, generator=g)) * mask
    expected = data_consistency(image, kspace, mask, nu)
    out = RealDataConsistency(RealFFT2c(32, 32), nu)(
        torch.stack((image.real, image.imag), 1), kspace.real, kspace.imag, mask
    )
    torch.testing.assert_close(torch.complex(out[:, 0], out[:, 1]), expected, atol=1e-5, rtol=0)
