import numpy as np
import pytest
import torch

from csmri.physics import default_sample_n, fft2c, gaussian_line_density, gaussian_line_mask, undersample, zero_filled


def _lowest_frequency_rows(n: int, sample_n: int) -> list[int]:
    """Rows of *centred* k-space (numpy's ``fftshift`` layout) holding the ``sample_n`` lowest phase-encode
    frequencies, written from numpy's conventions alone: row ``r`` holds the integer frequency
    ``fftshift(fftfreq(n, 1/n))[r]``, and the ``sample_n`` lowest frequencies are those of a ``sample_n``-point grid,
    ``fftfreq(sample_n, 1/sample_n)`` (for an even count: ``-s/2 ... s/2 - 1``, numpy's own split)."""
    row_frequency = np.fft.fftshift(np.fft.fftfreq(n, d=1.0 / n))
    wanted = np.fft.fftfreq(sample_n, d=1.0 / sample_n)
    return sorted(int(np.flatnonzero(row_frequency == f)[0]) for f in wanted)


def test_lowest_frequency_rows_of_the_centred_layout():
    # the helper itself, by hand: 8 rows, DC at row 4 (fftshift of [0 1 2 3 -4 -3 -2 -1] is [-4 ... 3])
    assert _lowest_frequency_rows(8, 2) == [3, 4]
    assert _lowest_frequency_rows(8, 4) == [2, 3, 4, 5]
    assert _lowest_frequency_rows(512, 8) == list(range(252, 260))


def test_fft2c_puts_dc_on_the_row_numpy_centres_it():
    """The convention the centre lines rely on: ``fft2c`` is numpy's centred orthonormal FFT."""
    x = torch.randn(2, 16, 12, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    a = x.numpy()
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), expected, atol=1e-5)
    dc_row = int(np.flatnonzero(np.fft.fftshift(np.fft.fftfreq(16)) == 0)[0])
    dc_col = int(np.flatnonzero(np.fft.fftshift(np.fft.fftfreq(12)) == 0)[0])
    np.testing.assert_allclose(fft2c(x)[:, dc_row, dc_col].numpy(), a.sum(axis=(-2, -1)) / np.sqrt(16 * 12), atol=1e-5)


@pytest.mark.parametrize("n, acc", [(512, 8), (128, 8), (64, 4), (66, 8), (32, 2.5), (16, 1)])
def test_exact_line_count_and_centre(n, acc):
    g = torch.Generator().manual_seed(0)
    mask = gaussian_line_mask(256, (n, 8), acc, generator=g)
    assert mask.shape == (256, n, 8) and mask.dtype == torch.float32
    lines = mask[:, :, 0]
    assert torch.all(lines.sum(dim=1) == int(n / acc))
    # the lines sampled in all 256 masks are exactly the sample_n lowest frequencies (all lines when acc = 1)
    always = torch.nonzero(lines.all(dim=0)).flatten().tolist()
    expected = list(range(n)) if acc == 1 else _lowest_frequency_rows(n, max(2, n // 64))
    assert always == expected
    # every sampled line is full along the readout axis
    assert torch.equal(mask, lines.unsqueeze(-1).expand_as(mask))


@pytest.mark.parametrize("n, acc, sample_n", [(64, 8, None), (64, 4, 4), (128, 8, 6), (66, 8, None)])
def test_zero_filling_keeps_the_lowest_frequencies_of_numpys_fft(n, acc, sample_n):
    """Undersampling through the project's path keeps DC and the ``sample_n`` lowest phase-encode frequencies of the
    image's plain (uncentred) numpy FFT exactly, in every mask: convention-free, whatever the shift."""
    g = torch.Generator().manual_seed(1)
    image = torch.randn(32, n, 24, dtype=torch.complex128, generator=g).to(torch.complex64)
    mask = gaussian_line_mask(32, (n, 24), acc, sample_n=sample_n, generator=g)
    zf = zero_filled(undersample(image, mask)).numpy().astype(np.complex128)
    full = np.fft.fft2(image.numpy().astype(np.complex128))
    kept = np.fft.fft2(zf)
    np.testing.assert_allclose(kept[:, 0, 0], full[:, 0, 0], rtol=1e-5, atol=1e-4)  # DC
    s = max(2, n // 64) if sample_n is None else sample_n
    low = np.fft.fftfreq(s, d=1.0 / s).astype(int) % n  # numpy's row index of each of the s lowest frequencies
    np.testing.assert_allclose(kept[:, low, :], full[:, low, :], rtol=1e-5, atol=1e-4)


def test_paper_setting_512_with_8_centre_lines():
    mask = gaussian_line_mask(4, (512, 512), 8, sample_n=8, generator=torch.Generator().manual_seed(3))
    lines = mask[:, :, 0]
    assert torch.all(lines.sum(1) == 64)
    assert torch.all(lines[:, 252:260] == 1)


def test_default_sample_n_scales_with_size():
    assert default_sample_n(512) == 8
    assert default_sample_n(128) == 2
    assert default_sample_n(32) == 2


def test_same_generator_seed_same_mask_and_batch_rows_differ():
    a = gaussian_line_mask(8, (64, 64), 8, generator=torch.Generator().manual_seed(7))
    b = gaussian_line_mask(8, (64, 64), 8, generator=torch.Generator().manual_seed(7))
    c = gaussian_line_mask(8, (64, 64), 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a[:, :, 0]}) > 1


def test_density_shape_and_normalisation():
    n, acc, sample_n = 128, 8, 4
    d = gaussian_line_density(n, acc, sample_n)
    assert d.shape == (n,)
    assert d.sum().item() == pytest.approx(1.0, abs=1e-5)
    centre = _lowest_frequency_rows(n, sample_n)
    assert torch.all(d[centre] == 0) and int((d > 0).sum()) == n - sample_n
    # Gaussian peak near the centre, uniform floor 1/(2 acc) relative to the peak 1 at the edges
    peak_neighbour = d[n // 2 + sample_n].item()
    edge = d[0].item()
    expected_edge_ratio = (np.exp(-0.5 * (64 / 12.8) ** 2) + 1 / 16) / (np.exp(-0.5 * (4 / 12.8) ** 2) + 1 / 16)
    assert edge / peak_neighbour == pytest.approx(expected_edge_ratio, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shape=(64, 64), acceleration=0.5), "acceleration"),
        (dict(shape=(64, 64), acceleration=float("nan")), "acceleration"),
        (dict(shape=(63, 64), acceleration=4), "even"),
        (dict(shape=(2, 64), acceleration=1), "even and >="),
        (dict(shape=(64, 64), acceleration=16, sample_n=8), "fewer than"),
        (dict(shape=(64, 64), acceleration=4, sample_n=-1), "sample_n"),
        (dict(shape=(64, 0), acceleration=4), "width"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gaussian_line_mask(2, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_draws_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(0)
    mask = gaussian_line_mask(4, (128, 128), 8, generator=g)
    assert mask.device.type == "cuda"
    assert torch.all(mask[:, :, 0].sum(1) == 16)


@pytest.mark.parametrize(
    ("shape", "acc", "sample_n"),
    [
        ((64, 64), 8, 7),  # one random line
        ((64, 64), 8, 0),  # no centre lines: all 8 random
        ((64, 64), 8, 8),  # the centre alone reaches the count: no random line
        ((4, 1), 2, 2),  # the smallest mask: 4 lines, one column
    ],
)
def test_edge_settings_give_exactly_n_over_acc_full_lines(shape, acc, sample_n):
    masks = gaussian_line_mask(50, shape, acc, sample_n=sample_n, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (50, *shape)
    lines = masks[..., 0]
    assert torch.all(masks == lines[..., None])  # full readout lines
    assert torch.all(lines.sum(dim=-1) == shape[0] // acc)
    rows = _lowest_frequency_rows(shape[0], sample_n) if sample_n else []
    assert torch.all(lines[:, rows] == 1)
