import pytest
import torch

from csmri.physics import channels_to_complex, complex_to_channels, fft2c, ifft2c


def _random_image(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex64, generator=g)


def test_round_trip_is_identity():
    x = _random_image(3, 32, 24)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fft2c(ifft2c(x)), x, atol=1e-5, rtol=1e-5)


def test_parseval_orthonormal():
    x = _random_image(2, 64, 64, seed=1).to(torch.complex128)
    energy = x.abs().pow(2).sum(dim=(-2, -1))
    torch.testing.assert_close(fft2c(x).abs().pow(2).sum(dim=(-2, -1)), energy)


def test_kspace_is_centred():
    # a constant image has all its energy in the DC coefficient, which must sit at (H//2, W//2)
    x = torch.ones(1, 16, 12, dtype=torch.complex64)
    k = fft2c(x).abs()
    assert k.argmax().item() == 8 * 12 + 6
    assert k[0, 8, 6].item() == pytest.approx((16 * 12) ** 0.5, rel=1e-5)


def test_rejects_real_input():
    with pytest.raises(ValueError, match="complex"):
        fft2c(torch.ones(4, 4))
    with pytest.raises(ValueError, match="complex"):
        ifft2c(torch.ones(4, 4))


def test_channel_conversion_round_trip():
    x = _random_image(2, 8, 6)
    channels = complex_to_channels(x)
    assert channels.shape == (2, 2, 8, 6)
    torch.testing.assert_close(channels[:, 0], x.real)
    torch.testing.assert_close(channels[:, 1], x.imag)
    torch.testing.assert_close(channels_to_complex(channels), x)
    with pytest.raises(ValueError):
        channels_to_complex(torch.zeros(2, 3, 8, 6))
    with pytest.raises(ValueError):
        complex_to_channels(torch.zeros(2, 8, 6))
