"""Foreground Dice, DiceMetric and the semantic interpretability score (SIS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from csmri.metrics.segmentation import (
    DiceMetric,
    SemanticInterpretabilityScore,
    foreground_dice,
    has_structure,
)


def _np_dice(p: np.ndarray, t: np.ndarray, classes: list[int] | None = None) -> float:
    """Reference per-slice Dice in plain numpy (conventions of the module docstring)."""
    groups = [(p > 0, t > 0)] if classes is None else [(p == c, t == c) for c in classes]
    values = []
    for pm, tm in groups:
        total = pm.sum() + tm.sum()
        if total:
            values.append(2.0 * (pm & tm).sum() / total)
    return float(np.mean(values)) if values else 1.0


def test_dice_hand_computed() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1  # 4 pixels
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    pred[0, 1, 1:4] = 1  # 3 pixels, 2 of them overlap the target
    assert foreground_dice(pred, target).item() == pytest.approx(2 * 2 / (3 + 4))
    # label values > 0 are merged into one foreground when classes is None
    assert foreground_dice(pred * 2, target).item() == pytest.approx(4 / 7)
    assert foreground_dice(target, target).item() == 1.0


def test_dice_empty_conventions() -> None:
    empty = torch.zeros(2, 5, 5, dtype=torch.long)
    full = torch.ones(2, 5, 5, dtype=torch.long)
    assert foreground_dice(empty, empty).tolist() == [1.0, 1.0]  # nothing to find, nothing found
    assert foreground_dice(empty, full).tolist() == [0.0, 0.0]
    assert foreground_dice(full, empty).tolist() == [0.0, 0.0]
    assert has_structure(torch.stack([empty[0], full[0]])).tolist() == [False, True]


def test_dice_matches_numpy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 3, (6, 16, 16), generator=g)
    target = torch.randint(0, 3, (6, 16, 16), generator=g)
    target[0] = 0  # an empty target slice
    pred[1][pred[1] == 2] = 0  # class 2 absent from the prediction of slice 1
    target[2][target[2] == 1] = 2  # class 1 absent from the target of slice 2 (predicted -> scores 0)
    for classes in (None, [1], [2], [1, 2]):
        got = foreground_dice(pred, target, classes).numpy()
        ref = [_np_dice(p, t, classes) for p, t in zip(pred.numpy(), target.numpy(), strict=True)]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # (B, 1, H, W) and bool inputs are accepted
    np.testing.assert_allclose(foreground_dice(pred[:, None] > 0, target[:, None]), foreground_dice(pred, target))


def test_dice_per_class_skips_absent_classes() -> None:
    target = torch.tensor([[[1, 1, 0, 0]]])
    pred = torch.tensor([[[1, 0, 0, 0]]])
    # class 2 absent from both: skipped, so the mean is class 1's Dice alone
    assert foreground_dice(pred, target, classes=[1, 2]).item() == pytest.approx(2 / 3)
    pred2 = torch.tensor([[[1, 0, 2, 0]]])  # class 2 predicted but not in the target: scores 0
    assert foreground_dice(pred2, target, classes=[1, 2]).item() == pytest.approx((2 / 3 + 0) / 2)


def test_dice_bad_inputs() -> None:
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="argmax"):
        foreground_dice(torch.rand(1, 4, 4), t)
    with pytest.raises(ValueError, match="same shape"):
        foreground_dice(torch.zeros(1, 4, 5, dtype=torch.long), t)
    with pytest.raises(ValueError, match="> 0"):
        foreground_dice(t, t, classes=[0, 1])


def _batch(seed: int, n: int = 6, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred on recon, pred on ground truth, target); slices 0 and 3 have no structure in the target."""
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, size, size, generator=g) > 0.6).long()
    target[0] = 0
    target[3] = 0
    flip = lambda p: torch.where(torch.rand(n, size, size, generator=g) < p, 1 - target, target)  # noqa: E731
    return flip(0.3), flip(0.1), target


def test_dice_metric_ignores_slices_without_structure() -> None:
    pred, _, target = _batch(1)
    m = DiceMetric()
    m.update(pred, target)
    keep = has_structure(target)
    ref = foreground_dice(pred[keep], target[keep]).numpy()
    assert m.count.item() == 4
    assert m.compute().item() == pytest.approx(ref.mean(), abs=1e-12)
    assert m.compute_std().item() == pytest.approx(ref.std(), abs=1e-12)
    assert m.compute_std(ddof=1).item() == pytest.approx(ref.std(ddof=1), abs=1e-12)
    # wildly wrong predictions on structure-free slices change nothing
    pred2 = pred.clone()
    pred2[~keep] = 1
    m2 = DiceMetric()
    m2.update(pred2, target)
    assert m2.compute().item() == pytest.approx(m.compute().item(), abs=1e-15)


def test_dice_metric_batches_and_ranks_equal_concatenation() -> None:
    (p1, _, t1), (p2, _, t2) = _batch(2), _batch(3)
    whole = DiceMetric()
    whole.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    split = DiceMetric()
    split.update(p1, t1)
    split.update(p2, t2)
    # two "ranks" merged with the states' reduction (sum), as a DDP sync does
    rank0, rank1 = DiceMetric(), DiceMetric()
    rank0.update(p1, t1)
    rank1.update(p2, t2)
    rank0.merge_state(rank1)
    for m in (split, rank0):
        assert m.compute().item() == pytest.approx(whole.compute().item(), abs=1e-12)
        assert m.compute_std().item() == pytest.approx(whole.compute_std().item(), abs=1e-12)
    assert all(fx is torch.sum or getattr(fx, "__name__", "") == "dim_zero_sum" for fx in whole._reductions.values())


def test_sis_of_ground_truth_is_exactly_one() -> None:
    _, pred_gt, target = _batch(4)
    sis = SemanticInterpretabilityScore()
    sis.update(pred_gt, pred_gt, target)
    out = sis.compute()
    assert out["sis"].item() == 1.0
    assert out["dice"].item() == out["dice_gt"].item() < 1.0  # the normaliser is the net's real Dice
    assert out["n_slices"].item() == 4


def test_sis_value_and_aggregation() -> None:
    (r1, g1, t1), (r2, g2, t2) = _batch(5), _batch(6)
    split = SemanticInterpretabilityScore()
    split.update(r1, g1, t1)
    split.update(r2, g2, t2)
    whole = SemanticInterpretabilityScore()
    r, g, t = torch.cat([r1, r2]), torch.cat([g1, g2]), torch.cat([t1, t2])
    whole.update(r, g, t)
    keep = [bool((lab > 0).any()) for lab in t.numpy()]  # slices whose target holds the structure
    d_r = np.array([_np_dice(p, lab) for p, lab, k in zip(r.numpy(), t.numpy(), keep, strict=True) if k])
    d_g = np.array([_np_dice(p, lab) for p, lab, k in zip(g.numpy(), t.numpy(), keep, strict=True) if k])
    a, b = split.compute(), whole.compute()
    for name in a:
        assert a[name].item() == pytest.approx(b[name].item(), abs=1e-12), name
    assert a["sis"].item() == pytest.approx(d_r.mean() / d_g.mean(), abs=1e-12)
    assert a["dice"].item() == pytest.approx(d_r.mean(), abs=1e-12)
    assert a["dice_gt_std"].item() == pytest.approx(d_g.std(), abs=1e-12)
    assert a["dice_std"].item() == pytest.approx(d_r.std(), abs=1e-12)  # population std (ddof 0), as the table's
    assert a["n_slices"].item() == sum(keep) == 8
    assert a["sis"].item() < 1.0


def test_sis_ignores_slices_without_structure() -> None:
    r, g, t = _batch(7)
    base = SemanticInterpretabilityScore()
    base.update(r, g, t)
    extra_t = torch.zeros(3, *t.shape[1:], dtype=torch.long)
    extra_r = torch.ones_like(extra_t)  # false positives everywhere on structure-free slices
    with_extra = SemanticInterpretabilityScore()
    with_extra.update(torch.cat([r, extra_r]), torch.cat([g, extra_t]), torch.cat([t, extra_t]))
    for name, value in base.compute().items():
        assert with_extra.compute()[name].item() == pytest.approx(value.item(), abs=1e-15), name
