import math

import pytest
import torch
import torch.nn.functional as F

from csmri.lit.replay import ReplayBuffer
from csmri.losses.adversarial import DiscriminatorLoss, FeatureMatchingLoss, GeneratorAdversarialLoss
from csmri.losses.normalizer import LossNormalizer
from csmri.losses.perceptual import PerceptualLoss, refinement_penalty


def test_one_sided_label_smoothing_target():
    real, fake = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 3.0]])
    sig = torch.sigmoid
    expected_real = -(0.9 * torch.log(sig(real)) + 0.1 * torch.log(1 - sig(real))).mean()
    expected_fake = -torch.log(1 - sig(fake)).mean()
    torch.testing.assert_close(DiscriminatorLoss(0.1)(real, fake), expected_real + expected_fake)
    # smoothing only on the real side: a perfectly confident D keeps a floor from the 0.9 target
    assert DiscriminatorLoss(0.1)(torch.full((4,), 50.0), torch.full((4,), -50.0)) > 0.3
    with pytest.raises(ValueError):
        DiscriminatorLoss(1.0)


def test_generator_loss_is_non_saturating():
    logits = torch.tensor([-5.0, 0.0, 5.0], requires_grad=True)
    loss = GeneratorAdversarialLoss()(logits)
    torch.testing.assert_close(loss, -F.logsigmoid(logits).mean())
    loss.backward()
    assert logits.grad[0].abs() > 0.3  # strong gradient where D confidently rejects the fake


def test_feature_matching_detaches_real_features():
    real = [torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 5, 2, 2, requires_grad=True)]
    fake = [torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 5, 2, 2, requires_grad=True)]
    loss = FeatureMatchingLoss()(real, fake)
    expected = ((fake[0] - real[0]).abs().mean() + (fake[1] - real[1]).abs().mean()) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(r.grad is None for r in real) and all(f.grad is not None for f in fake)
    # every D feature map is matched: lists of other lengths, or none, are an error, not a silent subset
    with pytest.raises(ValueError, match="need matching non-empty feature lists, got 2 and 1"):
        FeatureMatchingLoss()(real, fake[:1])
    with pytest.raises(ValueError, match="got 0 and 0"):
        FeatureMatchingLoss()([], [])


def test_perceptual_loss_and_penalty():
    extractor = torch.nn.Conv2d(1, 2, 3)
    loss = PerceptualLoss(extractor)
    a, b = torch.rand(2, 8, 8), torch.rand(2, 8, 8)
    loss_ab = loss(a.unsqueeze(1), b.unsqueeze(1))
    torch.testing.assert_close(loss_ab, F.mse_loss(extractor(a.unsqueeze(1)), extractor(b.unsqueeze(1))))
    assert loss(a.unsqueeze(1), a.unsqueeze(1)) == 0
    torch.testing.assert_close(refinement_penalty(torch.tensor([-1.0, 3.0])), torch.tensor(2.0))


def _terms(scale: float = 1.0):
    return {k: torch.tensor(v * scale) for k, v in {"adv": 0.7, "feat": 2.0, "vgg": 30.0, "pen": 0.25}.items()}


def test_first_step_normaliser_makes_every_term_one():
    norm = LossNormalizer("first_step", alpha="auto", alpha_target=0.1)
    norm.initialise(_terms())
    total, normalised = norm(_terms())
    for k in ("adv_norm", "feat_norm", "vgg_norm"):
        assert normalised[k].item() == pytest.approx(1.0)
    assert normalised["pen_weighted"].item() == pytest.approx(0.1)
    assert total.item() == pytest.approx(0.5 + 0.5 + 1.0 + 0.1)  # the paper's 1/2(1 + 1) + 1 + 0.1
    # later steps are relative to the first step; the constants do not move
    _, later = norm(_terms(2.0))
    assert later["vgg_norm"].item() == pytest.approx(2.0)


def test_fixed_mode_uses_raw_terms_and_is_ready_at_once():
    norm = LossNormalizer("fixed", weights={"adv": 0.5, "feat": 1.0, "vgg": 10.0}, alpha=2.0)
    assert bool(norm.initialised)
    total, _ = norm(_terms())
    assert total.item() == pytest.approx(0.5 * 0.7 + 2.0 + 10 * 30 + 2 * 0.25)


def test_normaliser_constants_live_in_the_state_dict():
    norm = LossNormalizer()
    norm.initialise(_terms())
    restored = LossNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert bool(restored.initialised)
    torch.testing.assert_close(restored.scales, torch.tensor([0.7, 2.0, 30.0]))
    assert restored.alpha.item() == pytest.approx(0.4)


def test_normaliser_bad_config():
    with pytest.raises(ValueError, match="mode"):
        LossNormalizer("per_step")
    with pytest.raises(ValueError, match="weights"):
        LossNormalizer(weights={})
    with pytest.raises(ValueError, match="alpha"):
        LossNormalizer(alpha="big")
    with pytest.raises(RuntimeError, match="initialise"):
        LossNormalizer()(_terms())
    norm = LossNormalizer("fixed", weights={"adv": 1.0, "nmse": 15.0}, alpha=None)
    with pytest.raises(ValueError, match="missing loss terms"):
        norm(_terms())


def test_custom_terms_without_penalty():
    norm = LossNormalizer("fixed", weights={"adv": 1.0, "nmse": 15.0, "freq": 0.0}, alpha=None)
    assert norm.term_names == ("adv", "nmse")  # zero-weight terms are dropped
    total, normalised = norm({"adv": torch.tensor(2.0), "nmse": torch.tensor(0.1)})
    assert total.item() == pytest.approx(2.0 + 1.5) and "pen_weighted" not in normalised


def _values(x: torch.Tensor) -> list[float]:
    return x.flatten().tolist()


def test_replay_buffer_fills_then_swaps():
    buffer = ReplayBuffer(capacity=4, p=1.0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    torch.testing.assert_close(buffer.query(first), first)  # filling: images pass through
    assert int(buffer.count) == 4 and sorted(_values(buffer.images)) == [0.0, 1.0, 2.0, 3.0]
    second = torch.tensor([10.0, 11.0, 12.0]).view(3, 1, 1, 1)
    out = _values(buffer.query(second, generator=torch.Generator().manual_seed(0)))
    # p = 1: every output is an image stored before it (never the new one), and each stored image leaves the buffer
    # when it is returned, so none comes back twice; the new images take the returned ones' places
    for i, value in enumerate(out):
        assert value in [0.0, 1.0, 2.0, 3.0, *_values(second)[:i]], (i, value)
    assert len(set(out)) == len(out)
    assert sorted(_values(buffer.images)) == sorted(set(_values(first) + _values(second)) - set(out))
    assert int(buffer.count) == 4

    never = ReplayBuffer(capacity=2, p=0.0)
    never.query(first[:2])
    torch.testing.assert_close(never.query(second), second)
    assert sorted(_values(never.images)) == [0.0, 1.0]  # p = 0: the buffer keeps its images


def test_replay_buffer_swap_probability():
    """Once full, each image is swapped for a stored one with probability p, independently: over n draws the swap
    count is Binomial(n, p); the measured rate must lie within 4 standard deviations of p."""
    p, capacity, n = 0.5, 10, 4000
    buffer = ReplayBuffer(capacity=capacity, p=p)
    buffer.query(-torch.arange(1.0, capacity + 1).view(-1, 1, 1, 1))  # stored: -1 .. -10
    new = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)  # every image distinct
    out = buffer.query(new, generator=torch.Generator().manual_seed(1))
    swapped = out.flatten() != new.flatten()
    rate = swapped.float().mean().item()
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n), rate
    # a swapped image is one stored earlier: a filled one (< 0) or an earlier image of this batch
    index = torch.arange(n, dtype=torch.float32)
    assert torch.all(out.flatten()[swapped] < index[swapped])


def test_replay_buffer_round_trips_through_state_dict():
    buffer = ReplayBuffer(capacity=3)
    buffer.query(torch.randn(2, 2, 4, 4))
    restored = ReplayBuffer(capacity=3)
    restored.load_state_dict(buffer.state_dict())
    assert int(restored.count) == 2
    torch.testing.assert_close(restored.images, buffer.images)
