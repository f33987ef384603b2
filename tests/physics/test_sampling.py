"""Tests of the mask sampler and its seeding (moved from tests/data/test_datamodule.py)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from csmri.physics.sampling import MaskSampler
from csmri.physics.seeding import derive_seed, seeded_generator
from tests.physics.test_mask import _lowest_frequency_rows as lowest_frequency_rows


def test_evaluation_mask_depends_only_on_seed_and_key():
    sampler = MaskSampler(acceleration=4, seed=1)
    a, _ = sampler.evaluation_mask("p1/003", (64, 64))
    b, _ = MaskSampler(acceleration=4, seed=1).evaluation_mask("p1/003", (64, 64))
    c, _ = sampler.evaluation_mask("p1/004", (64, 64))
    d, _ = MaskSampler(acceleration=4, seed=2).evaluation_mask("p1/003", (64, 64))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_evaluation_masks_follow_eval_seed_not_the_training_seed():
    shape, key = (64, 64), "p1/003"
    pinned = [MaskSampler(acceleration=4, seed=s, eval_seed=0) for s in (0, 1, 2)]
    masks = [sampler.evaluation_mask(key, shape)[0] for sampler in pinned]
    assert all(torch.equal(masks[0], m) for m in masks[1:])
    # eval_seed=None keeps the single-seed behaviour (csmri reconstruct --seed, export's example inputs)
    assert torch.equal(MaskSampler(acceleration=4, seed=0).evaluation_mask(key, shape)[0], masks[0])
    assert not torch.equal(MaskSampler(acceleration=4, seed=1).evaluation_mask(key, shape)[0], masks[0])
    assert not torch.equal(MaskSampler(acceleration=4, seed=1, eval_seed=1).evaluation_mask(key, shape)[0], masks[0])
    training = [s.training_masks(4, shape, step=0, rank=0, device=torch.device("cpu"))[0] for s in pinned[:2]]
    assert not torch.equal(training[0], training[1])  # training masks still follow the run's seed
    assert pinned[1].settings["seed"] == 1 and pinned[1].settings["eval_seed"] == 0


def test_training_masks_fresh_per_sample_step_and_rank():
    sampler = MaskSampler(acceleration=4, seed=0)
    target = torch.randn(6, 64, 64, dtype=torch.complex64)
    first = sampler.simulate({"target": target}, train=True, step=0, rank=0)["mask"]
    again = sampler.simulate({"target": target}, train=True, step=0, rank=0)["mask"]
    next_step = sampler.simulate({"target": target}, train=True, step=1, rank=0)["mask"]
    other_rank = sampler.simulate({"target": target}, train=True, step=0, rank=1)["mask"]
    assert torch.equal(first, again)  # deterministic, so a resumed run sees the same masks
    assert not torch.equal(first, next_step)
    assert not torch.equal(first, other_rank)
    assert len({tuple(m[:, 0].tolist()) for m in first}) == 6


def test_seed_derivation_follows_its_definition():
    """``derive_seed(*parts)``: BLAKE2b with an 8-byte digest of ``repr(parts)``, read little-endian, shifted right one
    bit (63 bits) -- never Python's per-process salted ``hash``."""
    # independent value: `printf %s "(1, 'train', 0, 5)" | b2sum -l 64` (GNU coreutils) prints fb9689a9171b1d3a
    assert derive_seed(1, "train", 0, 5) == int.from_bytes(bytes.fromhex("fb9689a9171b1d3a"), "little") >> 1
    for parts in [(0, "eval", "p/000"), (0, "eval", "p/001"), (3, "train", 1, 12345), (2**40, "eval", "a b/ü")]:
        digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
        assert derive_seed(*parts) == int.from_bytes(digest, "little") >> 1
        assert 0 <= derive_seed(*parts) < 2**63
    assert derive_seed(0, "eval", "p/000") != derive_seed(0, "eval", "p/001")
    # the generator is seeded with exactly that value
    expected = torch.Generator().manual_seed(derive_seed(4, "x")).initial_seed()
    assert seeded_generator(4, "x").initial_seed() == expected == derive_seed(4, "x")


def _always_sampled_rows(masks: torch.Tensor) -> set[int]:
    """Rows sampled in every one of ``masks (M, H, W)`` (each row of a line mask is all 0 or all 1)."""
    rows = masks[..., 0].bool()
    return set(torch.nonzero(rows.all(dim=0)).flatten().tolist())


def test_sampler_settings_reach_every_training_and_evaluation_mask():
    """The sampler's ``sample_n`` / ``center_fraction`` / acceleration decide the masks it draws, in training and in
    evaluation (at N=64 the default would be max(2, 64 // 64) = 2 centre lines: a setting dropped on the way to the
    mask shows as 2 always-sampled lines)."""
    n, shape = 64, (64, 64)
    for sampler, centre in [
        (MaskSampler(acceleration=4, sample_n=9, seed=3), 9),
        (MaskSampler(acceleration=4, center_fraction=7 / 64, seed=3), 7),
    ]:
        target = torch.zeros(8, *shape, dtype=torch.complex64)
        training = torch.cat([sampler.simulate({"target": target}, train=True, step=s)["mask"] for s in range(25)])
        evaluation = torch.stack([sampler.evaluation_mask(f"p/{i:03d}", shape)[0] for i in range(200)])
        for masks in (training, evaluation):
            assert torch.all(masks.sum(dim=-2)[..., 0] == n // 4)  # floor(N / acc) lines in every mask
            # 200 masks: a random line is in all of them with probability < 0.9 ** 200 -- only the centre lines are
            assert _always_sampled_rows(masks) == set(lowest_frequency_rows(n, centre))


def test_non_square_images_get_full_readout_lines_over_the_phase_encode_axis():
    """Masks cover ``(H, W)`` with H phase-encode lines (dim -2) that are full along the readout (dim -1)."""
    sampler = MaskSampler(acceleration=4, sample_n=3)
    target = torch.randn(2, 64, 40, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    for train in (True, False):
        batch = sampler.simulate({"target": target, "key": ["a/0", "a/1"]}, train=train)
        mask = batch["mask"]
        assert mask.shape == (2, 64, 40) and batch["kspace"].shape == (2, 64, 40)
        assert torch.all(mask == mask[..., :1])  # every row all 0 or all 1
        assert torch.all(mask[..., 0].sum(dim=-1) == 16)


def _noise_of(batch: dict, clean: torch.Tensor) -> torch.Tensor:
    return (batch["kspace"] - clean)[batch["mask"].bool()]


def test_noise_level_and_seeding_in_training_and_evaluation():
    """``noise_std`` is the std of each real component of the k-space noise, on sampled entries only; the noise is
    reproducible: from the batch's step in training, from the slice key (after its mask) in evaluation."""
    from csmri.physics import fft2c

    sigma, shape, keys = 0.05, (64, 64), [f"p/{i}" for i in range(6)]
    sampler = MaskSampler(acceleration=4, noise_std=sigma, seed=1, eval_seed=0)
    target = torch.randn(6, *shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(5))
    clean = fft2c(target)
    for train in (True, False):
        first = sampler.simulate({"target": target, "key": keys}, train=train, step=4)
        again = sampler.simulate({"target": target, "key": keys}, train=train, step=4)
        assert torch.equal(first["kspace"], again["kspace"])
        assert torch.all(first["kspace"][first["mask"] == 0] == 0)
        noise = _noise_of(first, clean)  # 6 slices x 16 lines x 64 columns = 6144 complex samples
        # the std of 6144 normal draws is within ~1 % (1 / sqrt(2 n)) of sigma; 5 % is ~5 standard errors
        assert noise.real.std().item() == pytest.approx(sigma, rel=0.05)
        assert noise.imag.std().item() == pytest.approx(sigma, rel=0.05)
    # evaluation noise is the draw that follows the slice's mask on the slice's own generator: with the same key the
    # same noise, whatever batch the slice is in
    mask, generator = sampler.evaluation_mask(keys[2], shape)
    eps = torch.randn(shape, dtype=torch.complex64, generator=generator) * (sigma * 2**0.5)
    alone = sampler.simulate({"target": target[2:3], "key": keys[2:3]}, train=False)
    torch.testing.assert_close(alone["kspace"][0], (clean[2] + eps) * mask, atol=1e-6, rtol=1e-5)


def test_sampler_defaults_are_the_papers_acquisition_and_targets_must_be_complex_slices():
    """Default: 8x, noiseless (the paper's setting); ``simulate`` takes complex ``(B, H, W)`` targets only."""
    sampler = MaskSampler()
    assert (sampler.acceleration, sampler.noise_std, sampler.mask) == (8.0, 0.0, "gaussian")
    target = torch.randn(2, 64, 64, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    batch = sampler.simulate({"target": target}, train=True)
    assert torch.equal(batch["kspace"], batch["kspace"] * batch["mask"])  # noiseless: F x on the sampled lines
    torch.testing.assert_close(
        batch["kspace"],
        torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(target, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
        * batch["mask"],
    )
    for bad in (target.real, target[0]):
        with pytest.raises(ValueError, match=r"must be complex \(B, H, W\)"):
            sampler.simulate({"target": bad}, train=True)
