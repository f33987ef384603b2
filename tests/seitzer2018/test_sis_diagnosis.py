"""The SIS diagnosis: its blur/residual split of a reconstruction's error and its degradations of ground truth, on
images whose spectra are known by construction."""

from __future__ import annotations

import math

import pytest
import torch

from csmri.data import MRIDataModule
from experiments.seitzer2018.sis_diagnosis import (
    SpectralSums,
    apply_gain,
    diagnose,
    effective_resolution,
    frequency_bins,
)


def _cosine_image(ky: int, kx: int, n: int = 16) -> torch.Tensor:
    """``(1, n, n)`` real image ``cos(2 pi (ky y + kx x) / n)``: its spectrum sits at ``(+-ky, +-kx)`` only."""
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return torch.cos(2 * math.pi * (ky * y + kx * x) / n).double()[None]


def test_frequency_bins_count_from_the_centred_dc():
    bins = frequency_bins(8, 6)  # |k_y| * (6 // 2 + 1) + |k_x|, DC at (4, 3)
    assert bins[4, 3] == 0
    assert bins[0, 0] == 4 * 4 + 3 and bins[5, 3] == 4 and bins[4, 5] == 2
    assert bins[3, 2] == bins[5, 4]  # k and -k share a bin


def test_a_pure_attenuation_is_all_blur():
    truth = 1.0 + _cosine_image(2, 1) + 0.5 * _cosine_image(5, 0)
    sums = SpectralSums(frequency_bins(16, 16))
    sums.update(0.7 * truth, truth)
    gain = sums.gain()[sums.xx > 1e-6]  # the three occupied bins: DC, (2, 1), (5, 0)
    assert len(gain) == 3 and torch.allclose(gain, torch.full_like(gain, 0.7))
    parts = {k: float(v.sum()) for k, v in sums.split().items()}
    assert parts["error"] == pytest.approx(0.09 * float((truth**2).sum()))  # |0.3 x|^2, Parseval
    assert parts["blur"] == pytest.approx(parts["error"]) and abs(parts["residual"]) < 1e-9


def test_content_the_truth_does_not_have_is_all_residual():
    truth = 1.0 + _cosine_image(2, 1)
    added = 0.3 * _cosine_image(6, 3)  # frequencies where the truth has no energy
    sums = SpectralSums(frequency_bins(16, 16))
    sums.update(truth + added, truth)
    parts = {k: float(v.sum()) for k, v in sums.split().items()}
    assert parts["error"] == pytest.approx(float((added**2).sum()))
    assert abs(parts["blur"]) < 1e-9 and parts["residual"] == pytest.approx(parts["error"])


def test_blur_and_residual_add_up_to_the_error_of_any_reconstruction():
    g = torch.Generator().manual_seed(0)
    truth, recon = torch.rand(3, 16, 16, generator=g), torch.rand(3, 16, 16, generator=g)
    sums = SpectralSums(frequency_bins(16, 16))
    sums.update(recon, truth)
    parts = sums.split()
    assert torch.allclose(parts["blur"] + parts["residual"], parts["error"])
    assert float(parts["error"].sum()) == pytest.approx(float(((recon - truth).double() ** 2).sum()))


def test_pooled_sums_equal_sums_binned_by_the_coarser_map():
    g = torch.Generator().manual_seed(1)
    truth, recon = torch.rand(2, 8, 6, generator=g), torch.rand(2, 8, 6, generator=g)
    fine = SpectralSums(frequency_bins(8, 6))
    fine.update(recon, truth)
    rows = (torch.arange(8) - 4).abs()[:, None].expand(8, 6)  # |k_y| of each sample
    direct = SpectralSums(rows)
    direct.update(recon, truth)
    pooled = fine.pooled(torch.arange(5 * 4) // 4)  # bin |k_y| * 4 + |k_x| -> |k_y|
    for name in ("xx", "hx", "hh"):
        assert torch.allclose(getattr(pooled, name), getattr(direct, name))


def test_apply_gain_filters_each_frequency():
    image = (1.0 + _cosine_image(3, 0)).float()
    gain = torch.ones(16, 16)
    gain[8 + 3, 8] = gain[8 - 3, 8] = 0.25  # the cosine's two frequencies (DC at index 8)
    assert torch.allclose(apply_gain(image, gain), (1.0 + 0.25 * _cosine_image(3, 0)).float(), atol=1e-5)


def test_effective_resolution_is_where_the_gain_first_falls_below_one_half():
    assert effective_resolution(torch.tensor([1.0, 0.9, 0.6, 0.4, 0.6])) == 0.75  # index 3 of 0..4
    assert effective_resolution(torch.tensor([1.0, 0.9, 0.6])) == 1.0


class _Threshold:
    """A stand-in segmentation net: the label is ``|image| > 0.3``."""

    def predict_labels(self, image: torch.Tensor) -> torch.Tensor:
        return (image.abs() > 0.3).long()


class _Scaled:
    """A reconstruction method that returns the ground truth times ``factor``: pure attenuation, no residual."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def reconstruct(self, batch):
        return batch["target"] * self.factor


def test_diagnose_splits_an_attenuation_into_blur_only(phantom_root):
    datamodule = MRIDataModule(str(phantom_root), batch_size=4, acceleration=4, sample_n=4)
    datamodule.setup("validate")
    methods = {"exact": _Scaled(1.0), "attenuated": _Scaled(0.4)}
    result = diagnose(datamodule, methods, _Threshold(), "val", batch_size=4)
    exact, scaled, scores = result["methods"]["exact"], result["methods"]["attenuated"], result["scores"]
    assert exact["mse"] < 1e-10 and exact["effective_resolution"] == 1.0 and scores["exact"]["sis"] == 1.0
    assert scaled["blur_share"] == pytest.approx(1.0) and scaled["effective_resolution"] == 0.0  # g = 0.4 everywhere
    # its blur alone is its own image; its residual alone is the truth itself
    blur_only, residual_only = scores["attenuated: its blur only"], scores["attenuated: its residual only"]
    assert blur_only["psnr"] == pytest.approx(scores["attenuated"]["psnr"], abs=1e-3)
    assert blur_only["dice"] == pytest.approx(scores["attenuated"]["dice"], abs=1e-6)
    assert residual_only["psnr"] > 60 and residual_only["sis"] == 1.0
    # a times the zero-filled error: every slice's PSNR falls by 20 log10(a2 / a1) from a1 to a2
    scores = result["scores"]
    drop = scores["+ 0.1 x zero-filled error"]["psnr"] - scores["+ 0.5 x zero-filled error"]["psnr"]
    assert drop == pytest.approx(20 * math.log10(5), abs=1e-3)
    assert result["slices"] == len(datamodule.dataset("val"))
