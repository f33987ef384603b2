"""The targets' perceptual features, cached per slice key, give the loss computed without the cache."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F

from csmri.app.train import train
from csmri.losses.perceptual import PerceptualLoss, TargetFeatureCache
from tests.helpers import ADVERSARIAL, compose_config


class CountingExtractor(torch.nn.Module):
    """A frozen 3x3 convolution that counts the images it has seen and records the dtype it computed in."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3).requires_grad_(False)
        self.images = 0
        self.dtypes: list[torch.dtype] = []

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        self.images += magnitude.shape[0]
        features = self.conv(magnitude.unsqueeze(1))
        self.dtypes.append(features.dtype)
        return features


def _reference(pred: torch.Tensor, target: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    return F.mse_loss(conv(pred.unsqueeze(1)), conv(target.unsqueeze(1)))


def test_cached_loss_equals_the_direct_loss_and_skips_seen_targets():
    g = torch.Generator().manual_seed(1)
    targets = {k: torch.rand(8, 8, generator=g) for k in "abcd"}
    extractor = CountingExtractor()
    loss = PerceptualLoss(extractor, cache_mb=1)
    for keys in (["a", "b"], ["b", "c"], ["c", "a", "d"], ["d", "b"]):
        target = torch.stack([targets[k] for k in keys])
        pred = torch.rand(len(keys), 8, 8, generator=g, requires_grad=True)
        value = loss(pred, target, keys=keys)
        torch.testing.assert_close(value, _reference(pred, target, extractor.conv))
        value.backward()  # the gradient reaches the prediction as without the cache
        expected_grad = torch.autograd.grad(_reference(pred, target, extractor.conv), pred)[0]
        torch.testing.assert_close(pred.grad, expected_grad)
    # the extractor saw the 9 predictions and each of the 4 targets once (the references call the convolution
    # directly); without the cache it would have seen the 9 targets too
    assert extractor.images == 9 + 4
    assert len(loss.cache) == 4


def test_bf16_runs_the_extractor_in_bf16_and_fp32_means_fp32_even_under_autocast():
    torch.manual_seed(1)
    pred, target = torch.rand(3, 12, 12, requires_grad=True), torch.rand(3, 12, 12)
    reference = _reference(pred.detach(), target, CountingExtractor().conv)

    half = CountingExtractor()
    value = PerceptualLoss(half, cache_mb=1, bf16=True)(pred, target, keys=["a", "b", "c"])
    assert half.dtypes == [torch.bfloat16, torch.bfloat16]  # the target's pass and the prediction's
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(reference.item(), rel=2e-2)  # bf16 keeps ~3 significant digits
    assert value.item() != reference.item()  # ... and really ran in bf16
    value.backward()
    assert pred.grad is not None and pred.grad.dtype == torch.float32

    full = CountingExtractor()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16-mixed training step around the loss
        value = PerceptualLoss(full, cache_mb=0, bf16=False)(pred, target)
    assert full.dtypes == [torch.float32, torch.float32]
    torch.testing.assert_close(value, reference)


def test_without_keys_or_budget_nothing_is_cached():
    extractor = CountingExtractor()
    target, pred = torch.rand(2, 8, 8), torch.rand(2, 8, 8)
    off = PerceptualLoss(extractor, cache_mb=0)
    off(pred, target, keys=["a", "b"])
    off(pred, target, keys=["a", "b"])
    assert extractor.images == 8 and len(off.cache) == 0
    on = PerceptualLoss(extractor)
    on(pred, target)  # validation / evaluation: no keys, no cache
    assert len(on.cache) == 0


def test_budget_caps_the_cache():
    features_bytes = 4 * 6 * 6 * 4  # 4 channels of 6x6 fp32 per image
    cache = TargetFeatureCache(budget_mb=2.5 * features_bytes / 2**20)
    extractor = CountingExtractor()
    cache.features(["a", "b", "c"], torch.rand(3, 8, 8), extractor)
    assert len(cache) == 2 and cache.used_bytes == 2 * features_bytes
    with pytest.raises(ValueError, match=">= 0"):
        TargetFeatureCache(-1)


def test_a_key_whose_target_changed_fails_loudly():
    cache = TargetFeatureCache()
    extractor = CountingExtractor()
    target = torch.rand(2, 8, 8)
    cache.features(["a", "b"], target, extractor)
    flipped = target.flip(-1)  # an augmented target under the same keys
    with pytest.raises(RuntimeError, match="different target"):
        cache.features(["a", "b"], flipped + 0.01, extractor)
    with pytest.raises(ValueError, match="2 keys for a batch of 1"):
        cache.features(["a", "b"], target[:1], extractor)


def _train_vgg_column(phantom_root, out, cache_mb: int) -> list[float]:
    overrides = [
        "experiment=dagan",
        f"data.root={phantom_root}",
        *ADVERSARIAL["dagan"],
        "logger=csv",
        "data.acceleration=4",
        "data.batch_size=3",
        "trainer.log_every_n_steps=1",
        "trainer.max_epochs=2",
        "+trainer.limit_val_batches=1",
        f"model.vgg_cache_mb={cache_mb}",
    ]
    train(compose_config("train", overrides, out))
    with open(out / "csv" / "metrics.csv") as f:
        return [float(r["train/vgg"]) for r in csv.DictReader(f) if r.get("train/vgg")]


def test_dagan_trains_identically_with_and_without_the_cache(phantom_root, tmp_path):
    # two epochs over the 12 training slices: every target of the second epoch comes from the cache; every
    # step's VGG term (and so the weights' trajectory) is the one computed without it
    cached = _train_vgg_column(phantom_root, tmp_path / "cached", 1024)
    direct = _train_vgg_column(phantom_root, tmp_path / "direct", 0)
    assert len(cached) == 8  # 12 training slices in batches of 3, twice
    assert cached == pytest.approx(direct, rel=1e-5)
