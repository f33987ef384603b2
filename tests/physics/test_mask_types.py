"""Mask types: the paper's Gaussian lines (bit-identical to before fastMRI's types were added), fastMRI's random and
equispaced lines, and the sampler's seeding rules for all of them."""

import numpy as np
import pytest
import torch

from csmri.physics import MASK_TYPES, MaskSampler, line_mask
from csmri.physics.mask import centre_line_count, centre_slice, equispaced_spacing

# line indices drawn before the random/equispaced types existed (commit 456eacb): the default must not move
GAUSSIAN_EVAL_64 = [3, 29, 30, 31, 32, 54, 59, 60]  # MaskSampler(8).evaluation_mask("p0/3", (64, 64))
GAUSSIAN_EVAL_128_ACC4_SEED7 = [11, 20, 21, 26, 28, 37, 38, 41, 42, 46, 50, 53, 54, 56, 58, 59]
GAUSSIAN_TRAIN = (  # MaskSampler(4, seed=7).training_masks(2, (64, 64), step=5, rank=1)
    [5, 9, 10, 21, 22, 23, 24, 26, 28, 30, 31, 32, 35, 37, 39, 45],
    [1, 14, 15, 22, 23, 26, 27, 28, 31, 32, 37, 38, 40, 45, 57, 61],
)


def _lines(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask[..., 0]).flatten().tolist()


def test_gaussian_default_is_bit_identical_to_before():
    assert _lines(MaskSampler(8).evaluation_mask("p0/3", (64, 64))[0]) == GAUSSIAN_EVAL_64
    mask = MaskSampler(4, seed=7).evaluation_mask("a/0", (128, 32))[0]
    assert _lines(mask)[:16] == GAUSSIAN_EVAL_128_ACC4_SEED7
    masks, _ = MaskSampler(4, seed=7).training_masks(2, (64, 64), 5, 1, torch.device("cpu"))
    assert (_lines(masks[0]), _lines(masks[1])) == GAUSSIAN_TRAIN


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("n, acc, cf", [(64, 4, 0.08), (320, 8, 0.04), (368, 4, 0.08), (128, 8, None)])
def test_fastmri_types_centre_lines_and_count(kind, n, acc, cf):
    g = torch.Generator().manual_seed(1)
    mask = line_mask(kind, 32, (n, 8), acc, center_fraction=cf, generator=g)
    assert mask.shape == (32, n, 8) and mask.dtype == torch.float32
    assert torch.equal(mask, mask[..., :1].expand_as(mask))  # full readout lines
    lines = mask[..., 0]
    n_centre = centre_line_count(n, None, cf)
    assert n_centre == (round(n * cf) if cf is not None else max(2, n // 64))
    assert torch.all(lines[:, centre_slice(n, n_centre)] == 1)
    counts = lines.sum(1)
    if kind == "random":
        assert torch.all(counts == int(n / acc))  # exact, like the Gaussian mask
    else:  # fastMRI's adjusted spacing: about N / acc lines in all
        assert torch.all((counts - n / acc).abs() <= n_centre / 2 + 2)


def _fastmri_equispaced(n: int, acc: float, cf: float, offset: int) -> np.ndarray:
    """fastMRI's EquispacedMaskFractionFunc for one offset (written out from its definition)."""
    num_low = round(n * cf)
    mask = np.zeros(n, dtype=bool)
    pad = (n - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    adjusted = round(acc * (num_low - n) / (num_low * acc - n))
    mask[offset::adjusted] = True
    return mask


@pytest.mark.parametrize("n, acc, cf", [(368, 4, 0.08), (368, 8, 0.04), (320, 4, 0.08), (64, 4, 0.125)])
def test_equispaced_matches_fastmri(n, acc, cf):
    spacing = equispaced_spacing(n, acc, round(n * cf))
    g = torch.Generator().manual_seed(0)
    lines = line_mask("equispaced", 200, (n, 1), acc, center_fraction=cf, generator=g)[..., 0].bool().numpy()
    offsets = set()
    for row in lines:
        outside = np.ones(n, dtype=bool)
        outside[centre_slice(n, round(n * cf))] = False
        offset = int(np.flatnonzero(row & outside)[0]) % spacing
        offsets.add(offset)
        np.testing.assert_array_equal(row, _fastmri_equispaced(n, acc, cf, offset))
    assert offsets == set(range(spacing))  # every offset in [0, spacing) occurs


def test_random_lines_are_uniform_outside_the_centre():
    n, acc = 64, 4
    g = torch.Generator().manual_seed(0)
    lines = line_mask("random", 4000, (n, 1), acc, center_fraction=0.125, generator=g)[..., 0]
    freq = lines.mean(0)
    centre = centre_slice(n, 8)
    outer = torch.cat([freq[: centre.start], freq[centre.stop :]])
    expected = (n / acc - 8) / (n - 8)
    assert abs(outer.mean().item() - expected) < 1e-6  # exact count -> exact mean
    assert (outer - expected).abs().max().item() < 0.04  # uniform: 4000 draws, std ~ 0.007


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_sampler_determinism_by_seed_and_key(kind):
    sampler = MaskSampler(4, mask=kind, seed=3)
    a = sampler.evaluation_mask("p/1", (64, 64))[0]
    assert torch.equal(a, MaskSampler(4, mask=kind, seed=3).evaluation_mask("p/1", (64, 64))[0])
    others = [MaskSampler(4, mask=kind, seed=s).evaluation_mask(k, (64, 64))[0] for s, k in [(4, "p/1"), (3, "p/2")]]
    if kind != "equispaced":  # equispaced has only `spacing` distinct masks
        assert not any(torch.equal(a, o) for o in others)
    t1, _ = sampler.training_masks(8, (64, 64), 2, 0, torch.device("cpu"))
    t2, _ = MaskSampler(4, mask=kind, seed=3).training_masks(8, (64, 64), 2, 0, torch.device("cpu"))
    assert torch.equal(t1, t2)
    batch = {"target": torch.randn(2, 64, 64, dtype=torch.complex64), "key": ["p/1", "q/0"]}
    out = sampler.simulate(batch, train=False)
    assert torch.equal(out["mask"][0], a)


def test_bad_mask_settings():
    with pytest.raises(ValueError, match="unknown mask type"):
        MaskSampler(4, mask="poisson")
    with pytest.raises(ValueError, match="not both"):
        MaskSampler(4, sample_n=4, center_fraction=0.1)
    with pytest.raises(ValueError, match="center_fraction"):
        line_mask("random", 1, (64, 64), 4, center_fraction=1.5)
