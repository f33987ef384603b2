"""Tests of the mask sampler and its seeding (moved from tests/data/test_datamodule.py)."""

from __future__ import annotations

import hashlib

import torch

from csmri.physics.sampling import MaskSampler
from csmri.physics.seeding import derive_seed, seeded_generator


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
