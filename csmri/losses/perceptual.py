"""Perceptual (VGG) loss: MSE between feature maps of magnitude images, with the targets' features cached."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_CACHE_MB = 1024.0


class TargetFeatureCache:
    """The frozen extractor's features of fixed training targets, computed once per slice key.

    A training target is a deterministic function of its slice key (csmri's DataModule applies no augmentation;
    masks change per batch, targets never do), so its features are the same every epoch. Computing them once
    removes one of the two extractor passes per step (DAGAN's VGG-16 at 244^2: 4.7 of 18 s per batch of 25 on 2
    CPU cores). Each entry also stores a fingerprint of its target (per-image sum and sum of squares of the
    magnitude, float64); a lookup whose target no longer matches it fails (a DataModule that augments its
    targets must turn the cache off: ``budget_mb=0``). Entries live on the features' device, are never
    checkpointed, and are added until ``budget_mb`` is used up; slices beyond it are computed every time.
    """

    def __init__(self, budget_mb: float = DEFAULT_CACHE_MB) -> None:
        if budget_mb < 0:
            raise ValueError(f"the feature cache's budget must be >= 0 MB, got {budget_mb}")
        self.budget_bytes = int(budget_mb * 2**20)
        self.used_bytes = 0
        self._features: dict[str, torch.Tensor] = {}
        self._fingerprints: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    @staticmethod
    def fingerprint(target_magnitude: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` float64: each image's sum and sum of squares."""
        flat = target_magnitude.detach().flatten(1).double()
        return torch.stack([flat.sum(1), flat.pow(2).sum(1)], dim=1)

    def features(
        self, keys: Sequence[str], target_magnitude: torch.Tensor, extractor: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """``extractor(target_magnitude)`` (no gradient, fp32), from the cache where ``keys`` were seen before."""
        if len(keys) != target_magnitude.shape[0]:
            raise ValueError(f"{len(keys)} keys for a batch of {target_magnitude.shape[0]} targets")
        prints = self.fingerprint(target_magnitude)
        missing = [i for i, key in enumerate(keys) if key not in self._features]
        computed: dict[int, torch.Tensor] = {}
        if missing:
            with torch.no_grad():
                fresh = extractor(target_magnitude[missing]).float()
            for row, i in enumerate(missing):
                computed[i] = fresh[row]
                self._store(keys[i], fresh[row], prints[i])
        hits = [i for i in range(len(keys)) if i not in computed]
        if hits:
            stored = torch.stack([self._fingerprints[keys[i]].to(prints.device) for i in hits])
            same = torch.isclose(stored, prints[hits], rtol=1e-6, atol=1e-9).all()
            # no host-device sync on GPUs: the assertion is checked asynchronously there
            torch._assert_async(same, "a cached slice key now has a different target (augmented? set the budget to 0)")
        rows = [computed[i] if i in computed else self._features[keys[i]].to(prints.device) for i in range(len(keys))]
        return torch.stack(rows)

    def _store(self, key: str, features: torch.Tensor, fingerprint: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.used_bytes + size > self.budget_bytes:
            return
        self._features[key] = features.clone()  # not a view of the batch's tensor
        self._fingerprints[key] = fingerprint.clone()
        self.used_bytes += size


class PerceptualLoss(nn.Module):
    """``mean((f(|x_hat|) - f(|x|))^2)`` with a frozen feature extractor ``f`` (e.g. VGGFeatures).

    Inputs are magnitude images ``(B, H, W)`` in [0, ~1]; the target's features carry no gradient. Given the
    batch's slice ``keys`` (training only), the target's features come from a :class:`TargetFeatureCache` of
    ``cache_mb`` MB (0 = off); the value is the same either way.

    ``bf16``: the extractor runs under bf16 autocast (its features, and so the loss, carry bf16's ~3 significant
    digits; the difference and mean are fp32); ``False`` runs it in fp32 even inside a bf16-mixed step. The
    LightningModules set it from the loss config's ``vgg_precision`` (:func:`csmri.lit.precision.
    resolve_feature_precision`) once the device is known.
    """

    def __init__(self, extractor: nn.Module, cache_mb: float = DEFAULT_CACHE_MB, bf16: bool = False) -> None:
        super().__init__()
        self.extractor = extractor
        self.cache = TargetFeatureCache(cache_mb)
        self.bf16 = bf16

    def extract(self, magnitude: torch.Tensor) -> torch.Tensor:
        """The extractor's fp32 features of ``magnitude``, computed in bf16 when :attr:`bf16` is set."""
        with torch.autocast(magnitude.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.extractor(magnitude).float()

    def forward(
        self, pred_magnitude: torch.Tensor, target_magnitude: torch.Tensor, keys: Sequence[str] | None = None
    ) -> torch.Tensor:
        if keys is not None and self.cache.budget_bytes > 0:
            target_features = self.cache.features(keys, target_magnitude, self.extract)
        else:
            with torch.no_grad():
                target_features = self.extract(target_magnitude)
        return F.mse_loss(self.extract(pred_magnitude), target_features)


def refinement_penalty(x_v: torch.Tensor) -> torch.Tensor:
    """``L_pen = mean |x_V|``: L1 size of the refinement network's output before the gate."""
    return x_v.abs().mean()
