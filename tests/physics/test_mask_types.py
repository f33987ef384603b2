"""Mask types: the paper's Gaussian lines (their distribution against the documented density), fastMRI's random and
equispaced lines, and the sampler's seeding rules for all of them."""

import hashlib

import numpy as np
import pytest
import torch

from csmri.physics import MASK_TYPES, MaskSampler, gaussian_line_mask, line_mask
from csmri.physics.mask import centre_line_count, centre_slice, equispaced_spacing


def _seed(*parts: object) -> int:
    """The documented seed derivation (csmri.physics.seeding), written out: BLAKE2b-64 of ``repr(parts)``, read
    little-endian, top 63 bits."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


def _paper_density(n: int, acc: float, sample_n: int) -> np.ndarray:
    """The paper's line density (DESIGN §2, Schlemper's ``cartesian_mask``), written out with numpy: a Gaussian of
    sigma N/10 centred at N/2 plus the floor 1/(2 acc); the ``sample_n`` centre rows ``N/2 - s/2 ... N/2 + s/2 - 1``
    (always sampled) get 0; normalised."""
    i = np.arange(n, dtype=np.float64)
    sigma = n / 10
    density = np.exp(-((i - n / 2) ** 2) / (2 * sigma**2)) + 1 / (2 * acc)
    density[n // 2 - sample_n // 2 : n // 2 - sample_n // 2 + sample_n] = 0.0
    return density / density.sum()


def _reference_inclusion(n: int, acc: float, sample_n: int, draws: int, seed: int) -> np.ndarray:
    """Line inclusion frequencies of Schlemper's procedure: the centre rows, plus ``N/acc - sample_n`` rows drawn by
    ``numpy.random.choice(N, k, replace=False, p=density)`` (one row at a time, proportional to the remaining
    density), over ``draws`` masks."""
    rng = np.random.RandomState(seed)
    p = _paper_density(n, acc, sample_n)
    counts = np.zeros(n)
    k = int(n / acc) - sample_n
    for _ in range(draws):
        counts[rng.choice(n, k, replace=False, p=p)] += 1
    counts[n // 2 - sample_n // 2 : n // 2 - sample_n // 2 + sample_n] = draws
    return counts / draws


@pytest.mark.parametrize("n, acc, sample_n", [(64, 4, 2), (128, 8, 4)])
def test_gaussian_line_frequencies_follow_the_paper_density(n, acc, sample_n):
    """Each line's inclusion frequency over many of csmri's masks agrees with Schlemper's procedure run with numpy on
    the density written out above, within the binomial standard error of both estimates (no copied line lists)."""
    draws, ref_draws = 8000, 8000
    g = torch.Generator().manual_seed(0)
    ours = line_mask("gaussian", draws, (n, 1), acc, sample_n=sample_n, generator=g)[..., 0].double().mean(0).numpy()
    ref = _reference_inclusion(n, acc, sample_n, ref_draws, seed=1)
    assert ours.sum() == pytest.approx(int(n / acc))  # exactly N/acc lines per mask
    pooled = (ours * draws + ref * ref_draws) / (draws + ref_draws)
    se = np.sqrt(pooled * (1 - pooled) * (1 / draws + 1 / ref_draws))
    z = np.abs(ours - ref) / np.maximum(se, 1e-12)
    # 5 standard errors on every line: a chance failure has probability < n * 6e-7 (seeds are fixed anyway)
    assert z.max() < 5, (int(z.argmax()), ours[z.argmax()], ref[z.argmax()])
    # the shape the density implies: edge lines sampled at the floor's rate, lines beside the centre far more often
    assert ours[n // 2 + sample_n] > 3 * ours[:4].mean() > 0


def test_gaussian_type_is_the_gaussian_line_mask():
    def g():
        return torch.Generator().manual_seed(5)

    a = line_mask("gaussian", 4, (64, 16), 4, generator=g())
    assert torch.equal(a, gaussian_line_mask(4, (64, 16), 4, generator=g()))
    # the centre lines reach it, set as a count or as fastMRI's fraction (8 / 64 = 0.125); 8 is not the default (2)
    eight = gaussian_line_mask(4, (64, 16), 4, sample_n=8, generator=g())
    assert not torch.equal(eight, a)
    assert torch.equal(line_mask("gaussian", 4, (64, 16), 4, sample_n=8, generator=g()), eight)
    assert torch.equal(line_mask("gaussian", 4, (64, 16), 4, center_fraction=0.125, generator=g()), eight)


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@pytest.mark.parametrize("sample_n", [1, 3])
def test_fastmri_types_take_the_centre_as_a_line_count(kind, sample_n):
    """``sample_n`` (instead of ``center_fraction``) sets the centre of the fastMRI types too; with 16 lines at 4x and
    a single centre line, exactly one random line is drawn outside it."""
    n, acc = 16, 4
    lines = line_mask(kind, 64, (n, 1), acc, sample_n=sample_n, generator=torch.Generator().manual_seed(3))[..., 0]
    assert torch.all(lines[:, centre_slice(n, sample_n)] == 1)
    if kind == "random":
        assert torch.all(lines.sum(1) == n // acc)  # sample_n centre lines + n / acc - sample_n random ones
    else:
        spacing = equispaced_spacing(n, acc, sample_n)
        outside = torch.ones(n, dtype=torch.bool)
        outside[centre_slice(n, sample_n)] = False
        for row in lines.bool():
            picked = torch.nonzero(row & outside).flatten()
            assert torch.all(torch.diff(picked) % spacing == 0)


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_masks_are_drawn_from_their_documented_seeds(kind):
    """Evaluation mask of slice ``key``: one draw from a generator seeded with ``(eval_seed, "eval", key)``; training
    masks of batch ``step`` on ``rank``: one batch draw from ``(seed, "train", rank, step)``
    (csmri.physics.sampling).
    """
    sampler = MaskSampler(4, mask=kind, seed=7, eval_seed=2)
    expected = line_mask(kind, 1, (128, 32), 4, generator=torch.Generator().manual_seed(_seed(2, "eval", "a/0")))[0]
    assert torch.equal(sampler.evaluation_mask("a/0", (128, 32))[0], expected)
    masks, _ = sampler.training_masks(3, (64, 64), 5, 1, torch.device("cpu"))
    expected = line_mask(kind, 3, (64, 64), 4, generator=torch.Generator().manual_seed(_seed(7, "train", 1, 5)))
    assert torch.equal(masks, expected)


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
    # a slice's evaluation mask does not depend on its batch: neighbours, position or batch size
    reordered = {"target": torch.randn(3, 64, 64, dtype=torch.complex64), "key": ["r/5", "q/0", "p/1"]}
    again = sampler.simulate(reordered, train=False)
    assert torch.equal(again["mask"][2], a) and torch.equal(again["mask"][1], out["mask"][1])


def test_bad_mask_settings():
    with pytest.raises(ValueError, match="unknown mask type"):
        MaskSampler(4, mask="poisson")
    with pytest.raises(ValueError, match="not both"):
        MaskSampler(4, sample_n=4, center_fraction=0.1)
    with pytest.raises(ValueError, match="center_fraction"):
        line_mask("random", 1, (64, 64), 4, center_fraction=1.5)
    # the documented range [0, 1] is closed: no centre, and (at acceleration 1) the whole of k-space as centre
    assert line_mask("random", 1, (64, 1), 4, center_fraction=0.0, generator=torch.Generator()).sum() == 16
    assert line_mask("random", 1, (64, 1), 1, center_fraction=1.0, generator=torch.Generator()).sum() == 64


@pytest.mark.parametrize(
    "n, acc, sample_n, spacing",
    [
        (64, 4, 0, 4),  # no centre: every acc-th line (fastMRI's formula with L = 0)
        (64, 1, 0, 1),  # no acceleration: every line
        (64, 1, 8, 1),  # acc (L - N) / (L acc - N) = 1 · (-56) / (-56)
        (8, 4, 1, 7),  # 4 · (1 - 8) / (4 - 8) = 7: one centre line changes the spacing
        (64, 4, 16, 64),  # L · acc = N: the centre alone is N / acc lines (fastMRI divides by zero here; L · acc > N
        # is refused before, as fewer than N / acc lines would remain for the centre)
    ],
)
def test_equispaced_spacing_at_its_edges(n, acc, sample_n, spacing):
    """fastMRI's adjusted spacing round(acc (L - N) / (L acc - N)), worked out by hand at the cases its formula
    leaves open (no centre, acceleration 1, a centre that alone reaches the acceleration)."""
    assert equispaced_spacing(n, acc, sample_n) == spacing


class EveryOtherLine:  # a user's own mask family: a LineMaskFunc subclass (below) named by its dotted path
    pass


def test_mask_families_are_classes_named_by_target_and_draw_what_the_functions_draw():
    from hydra.utils import instantiate

    from csmri.physics.mask import (
        MASK_FAMILIES,
        EquispacedLineMask,
        GaussianLineMask,
        LineMaskFunc,
        RandomLineMask,
        equispaced_line_lines,
        gaussian_line_lines,
        lines_to_mask,
        random_line_lines,
    )

    assert MASK_FAMILIES == {"gaussian": GaussianLineMask, "random": RandomLineMask, "equispaced": EquispacedLineMask}
    functions = {"gaussian": gaussian_line_lines, "random": random_line_lines, "equispaced": equispaced_line_lines}
    for name, cls in MASK_FAMILIES.items():
        # as a data config names it: {_target_: ..., _partial_: true}, completed with the acquisition's settings
        factory = instantiate({"_target_": f"csmri.physics.mask.{cls.__name__}", "_partial_": True})
        func = factory(acceleration=4, sample_n=None, center_fraction=0.125)
        drawn = func(3, (64, 48), torch.Generator().manual_seed(5))
        expected = lines_to_mask(functions[name](3, 64, 4, 8, torch.Generator().manual_seed(5), "cpu"), 48)
        assert torch.equal(drawn, expected) and drawn.dtype == torch.float32
        sampler = MaskSampler(4, mask=factory, seed=3)
        named = MaskSampler(4, mask=name, seed=3)
        dotted = MaskSampler(4, mask=f"csmri.physics.mask.{cls.__name__}", seed=3)
        assert sampler.settings == named.settings == dotted.settings and sampler.mask == name  # checkpoints: the name
        assert torch.equal(sampler.evaluation_mask("p/1", (64, 64))[0], named.evaluation_mask("p/1", (64, 64))[0])

    class Alternate(LineMaskFunc):
        def lines(self, batch_size, n, generator, device):
            return (torch.arange(n) % 2 == 0).expand(batch_size, n)

    global EveryOtherLine
    EveryOtherLine = Alternate
    own = MaskSampler(2, mask=f"{__name__}.EveryOtherLine")
    assert own.mask == f"{Alternate.__module__}.{Alternate.__qualname__}"
    assert own.evaluation_mask("p/0", (4, 2))[0].tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="unknown mask type"):
        MaskSampler(4, mask="csmri.physics.mask.PoissonMask")
    with pytest.raises(ValueError, match="does not name a csmri.physics.mask.LineMaskFunc"):
        MaskSampler(4, mask="torch.zeros")
    with pytest.raises(ValueError, match="does not build"):
        MaskSampler(4, mask=lambda **settings: settings)
