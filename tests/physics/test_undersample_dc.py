import pytest
import torch

from csmri.physics import (
    DataConsistency,
    complex_to_channels,
    data_consistency,
    fft2c,
    gaussian_line_mask,
    undersample,
    zero_filled,
)


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(3, 32, 32, dtype=torch.complex64, generator=g)
    mask = gaussian_line_mask(3, (32, 32), 4, generator=g)
    return image, mask, undersample(image, mask)


def test_undersample_zeroes_unsampled_and_keeps_sampled(problem):
    image, mask, kspace = problem
    full = fft2c(image)
    assert torch.all(kspace[mask == 0] == 0)
    torch.testing.assert_close(kspace[mask == 1], full[mask == 1])


def test_zero_filled_of_full_mask_is_the_image(problem):
    image, _, _ = problem
    full_mask = torch.ones(image.shape)
    torch.testing.assert_close(zero_filled(undersample(image, full_mask)), image, atol=1e-5, rtol=1e-5)


def test_noise_only_on_sampled_lines(problem):
    image, mask, clean = problem
    noisy = undersample(image, mask, noise_std=0.1, generator=torch.Generator().manual_seed(1))
    assert torch.all(noisy[mask == 0] == 0)
    residual = (noisy - clean)[mask == 1]
    assert residual.real.std().item() == pytest.approx(0.1, rel=0.1)
    assert residual.imag.std().item() == pytest.approx(0.1, rel=0.1)


def test_hard_dc_restores_measurements_exactly_and_is_idempotent(problem):
    _, mask, kspace = problem
    estimate = torch.randn(3, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    once = data_consistency(estimate, kspace, mask)
    k_once = fft2c(once)
    torch.testing.assert_close(k_once[mask == 1], kspace[mask == 1], atol=1e-5, rtol=1e-5)
    # unsampled k-space is kept from the estimate
    torch.testing.assert_close(k_once[mask == 0], fft2c(estimate)[mask == 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(data_consistency(once, kspace, mask), once, atol=1e-5, rtol=1e-5)


def test_weighted_dc_interpolates(problem):
    _, mask, kspace = problem
    estimate = torch.randn(3, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    k = fft2c(estimate)
    nu = 3.0
    out = fft2c(data_consistency(estimate, kspace, mask, nu=nu))
    expected = (k + nu * kspace) / (1 + nu)
    torch.testing.assert_close(out[mask == 1], expected[mask == 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[mask == 0], k[mask == 0], atol=1e-5, rtol=1e-5)
    # nu = 0 ignores the measurement; a large nu approaches hard replacement
    torch.testing.assert_close(data_consistency(estimate, kspace, mask, nu=0.0), estimate, atol=1e-5, rtol=1e-5)
    hard = data_consistency(estimate, kspace, mask)
    torch.testing.assert_close(data_consistency(estimate, kspace, mask, nu=1e7), hard, atol=1e-4, rtol=1e-4)


def test_dc_layer_on_channels(problem):
    image, mask, kspace = problem
    layer = DataConsistency()
    out = layer(complex_to_channels(image * 0), kspace, mask)
    assert out.shape == (3, 2, 32, 32)
    torch.testing.assert_close(out, complex_to_channels(zero_filled(kspace)), atol=1e-6, rtol=1e-5)


def test_bad_inputs_raise(problem):
    image, mask, kspace = problem
    with pytest.raises(ValueError, match="complex"):
        data_consistency(image, kspace.real, mask)
    with pytest.raises(ValueError, match="mask shape"):
        data_consistency(image, kspace, mask[:, :16])
    with pytest.raises(ValueError, match="mask shape"):
        undersample(image, mask[:, :, :16])
    with pytest.raises(ValueError, match="real"):
        undersample(image, mask.to(torch.complex64))
    with pytest.raises(ValueError, match="nu"):
        DataConsistency(nu=-1.0)
    with pytest.raises(ValueError, match="complex"):
        undersample(image.real, mask)


def test_dc_layer_passes_its_weight_to_the_weighted_form(problem):
    image, mask, kspace = problem
    estimate = torch.randn(3, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    for nu in (0.0, 3.0):
        layer = DataConsistency(nu=nu)
        out = layer(complex_to_channels(estimate), kspace, mask)
        # the weighted form written out: (1 - m) k + m (k + nu k0) / (1 + nu), in k-space
        k = fft2c(estimate)
        expected = torch.where(mask.bool(), (k + nu * kspace) / (1 + nu), k)
        torch.testing.assert_close(fft2c(torch.complex(out[:, 0], out[:, 1])), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="nu must be >= 0"):
        DataConsistency(nu=-0.5)


def test_channel_helpers_on_unbatched_images_and_complex_input():
    from csmri.physics import channels_to_complex

    x = torch.randn(2, 8, 6)
    z = channels_to_complex(x)
    assert z.shape == (8, 6) and torch.equal(z.real, x[0]) and torch.equal(z.imag, x[1])
    with pytest.raises(ValueError, match="real tensor with 2 channels"):
        channels_to_complex(torch.zeros(1, 2, 8, 8, dtype=torch.complex64))
    with pytest.raises(ValueError, match="expected a complex tensor"):
        complex_to_channels(torch.zeros(1, 8, 8))
