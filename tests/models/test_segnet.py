"""The SIS segmentation U-Net and its cross-entropy + Dice loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csmri.losses.segmentation import CEDiceLoss, soft_dice_loss
from csmri.models.segnet import SegmentationUNet

TINY = (4, 8, 16)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize(("size", "num_classes"), [((16, 16), 2), ((32, 48), 3), ((64, 8), 2)])
def test_logits_shape(size, num_classes, upsample):
    net = SegmentationUNet(num_classes=num_classes, channels=TINY, upsample=upsample)
    logits = net(torch.randn(2, 1, *size))
    assert logits.shape == (2, num_classes, *size) and logits.dtype == torch.float32
    assert net.size_divisor == 4 and net.num_classes == num_classes and net.in_channels == 1


def test_default_architecture():
    net = SegmentationUNet()
    assert net.levels == 4 and net.size_divisor == 8
    assert [block[0].out_channels for block in net.encoder] == [16, 32, 64, 128]
    assert [block[0].out_channels for block in net.decoder] == [64, 32, 16]
    assert net(torch.randn(1, 1, 24, 32)).shape == (1, 2, 24, 32)


def test_size_not_divisible_is_a_clear_error():
    net = SegmentationUNet(channels=(4, 8, 16, 32))
    with pytest.raises(ValueError, match=r"divisible by 8.*\(36, 64\)"):
        net(torch.randn(1, 1, 36, 64))


def test_wrong_input_format_is_a_clear_error():
    net = SegmentationUNet(channels=TINY)
    with pytest.raises(ValueError, match=r"real \(B, 1, H, W\)"):
        net(torch.randn(1, 2, 16, 16))  # a 2-channel [real, imag] image
    with pytest.raises(ValueError, match="complex"):
        net(torch.randn(1, 1, 16, 16, dtype=torch.complex64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_classes": 1}, "num_classes"), ({"channels": ()}, "channels"), ({"upsample": "nearest"}, "upsample")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationUNet(**kwargs)


def test_soft_dice_by_hand():
    # two pixels; class-1 probabilities 0.8 (label 1) and 0.4 (label 0)
    p1 = torch.tensor([0.8, 0.4])
    logits = torch.stack([torch.zeros(2), torch.log(p1 / (1 - p1))]).view(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    expected = 1 - (2 * 0.8 + 1) / (0.8 + 0.4 + 1 + 1)
    assert soft_dice_loss(logits, target, smooth=1.0).item() == pytest.approx(expected, abs=1e-6)
    both = 1 - ((2 * 0.8 + 1) / (0.8 + 0.4 + 1 + 1) + (2 * 0.6 + 1) / (0.2 + 0.6 + 1 + 1)) / 2
    assert soft_dice_loss(logits, target, include_background=True).item() == pytest.approx(both, abs=1e-6)


def test_ce_dice_is_the_weighted_sum():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    loss = CEDiceLoss(ce_weight=0.5, dice_weight=2.0)(logits, target)
    expected = 0.5 * F.cross_entropy(logits, target) + 2.0 * soft_dice_loss(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    weights = [0.2, 1.0, 3.0]
    weighted = CEDiceLoss(dice_weight=0.0, class_weights=weights)(logits, target)
    assert weighted.item() == pytest.approx(F.cross_entropy(logits, target, weight=torch.tensor(weights)).item())


def _soft_dice_numpy(logits: torch.Tensor, target: torch.Tensor, smooth: float, classes: list[int]) -> float:
    """1 - mean over ``classes`` of the batch-pooled soft Dice, written out with numpy."""
    z = logits.double().numpy()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    t = target.numpy()
    dice = [(2 * (p[:, c] * (t == c)).sum() + smooth) / (p[:, c].sum() + (t == c).sum() + smooth) for c in classes]
    return 1.0 - float(np.mean(dice))


def test_soft_dice_counts_classes_absent_from_the_batch():
    """Three classes, a batch whose labels are all background: the absent classes still count (with smoothing)."""
    logits, target = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)), torch.zeros(2, 4, 5).long()
    for smooth in (1.0, 0.0):
        expected = _soft_dice_numpy(logits, target, smooth, [1, 2])
        assert soft_dice_loss(logits, target, smooth=smooth).item() == pytest.approx(expected, rel=1e-5)
    expected = _soft_dice_numpy(logits, target, 1.0, [0, 1, 2])
    assert soft_dice_loss(logits, target, include_background=True).item() == pytest.approx(expected, rel=1e-5)


def test_ce_dice_options_reach_the_loss():
    """include_background, smooth (0 allowed), a Dice-only loss, integer class weights, bf16 logits; the class
    weights are a setting, not a checkpointed tensor."""
    gen = torch.Generator().manual_seed(2)
    logits, target = torch.randn(2, 3, 6, 6, generator=gen), torch.randint(0, 3, (2, 6, 6), generator=gen)
    loss = CEDiceLoss(ce_weight=0.5, dice_weight=2.0, smooth=0.5, include_background=True)(logits, target)
    expected = 0.5 * F.cross_entropy(logits, target).item() + 2.0 * _soft_dice_numpy(logits, target, 0.5, [0, 1, 2])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    dice_only = CEDiceLoss(ce_weight=0.0, smooth=0.0)(logits, target)
    assert dice_only.item() == pytest.approx(_soft_dice_numpy(logits, target, 0.0, [1, 2]), rel=1e-5)
    weighted = CEDiceLoss(dice_weight=0.0, class_weights=[1, 3, 2])
    nll = -F.log_softmax(logits.double(), dim=1).gather(1, target[:, None])[:, 0]
    w = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)[target]
    assert weighted(logits, target).item() == pytest.approx(((w * nll).sum() / w.sum()).item(), rel=1e-5)
    assert "class_weights" not in weighted.state_dict()
    half = CEDiceLoss()(logits.to(torch.bfloat16), target)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(CEDiceLoss()(logits.to(torch.bfloat16).float(), target).item(), rel=1e-5)


def test_perfect_prediction_has_small_loss():
    target = torch.zeros(1, 16, 16, dtype=torch.int64)
    target[:, 4:9, 5:12] = 1
    logits = 20.0 * F.one_hot(target, 2).permute(0, 3, 1, 2).float()
    assert CEDiceLoss()(logits, target).item() < 1e-3


def test_loss_errors():
    loss = CEDiceLoss()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        loss(torch.randn(1, 2, 4, 4), torch.full((1, 4, 4), 2))
    with pytest.raises(ValueError, match="integer"):
        loss(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        loss(torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="class_weights"):
        CEDiceLoss(class_weights=[1.0, 2.0, 3.0])(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="not both 0"):
        CEDiceLoss(ce_weight=0.0, dice_weight=0.0)
    with pytest.raises(ValueError, match="not both 0"):
        CEDiceLoss(ce_weight=-1.0, dice_weight=2.0)
    with pytest.raises(ValueError, match="smooth must be >= 0, got -0.5"):
        CEDiceLoss(smooth=-0.5)


@pytest.mark.parametrize(
    ("logits_shape", "target_shape", "target_value", "match"),
    [
        ((1, 1, 4, 4), (1, 4, 4), 0, r"C >= 2 classes, got \(1, 1, 4, 4\)"),
        ((2, 4, 4), (2, 4), 0, r"C >= 2 classes, got \(2, 4, 4\)"),
        ((1, 2, 3, 4), (1, 4, 3), 0, r"target must be \(B, H, W\) = \(1, 3, 4\), got \(1, 4, 3\)"),
        ((1, 2, 3, 4), (1, 3, 4), 2, r"lie in \[0, 2\) for 2 classes"),
    ],
)
def test_pair_errors_name_the_shapes(logits_shape, target_shape, target_value, match):
    with pytest.raises(ValueError, match=match):
        CEDiceLoss()(torch.zeros(logits_shape), torch.full(target_shape, target_value))
    with pytest.raises(ValueError, match="3 entries for 2 classes"):
        CEDiceLoss(class_weights=[1.0, 2.0, 3.0])(torch.randn(1, 2, 5, 5), torch.zeros(1, 5, 5, dtype=torch.int64))


def test_loss_decreases_on_a_tiny_problem():
    """A tiny U-Net learns to segment bright squares on noise: the loss falls well below its start."""
    gen = torch.Generator().manual_seed(0)
    target = torch.zeros(4, 16, 16, dtype=torch.int64)
    for i, (r, c) in enumerate([(2, 3), (8, 8), (5, 10), (9, 1)]):
        target[i, r : r + 5, c : c + 5] = 1
    image = (target.float() + 0.3 * torch.randn(4, 16, 16, generator=gen)).unsqueeze(1)
    torch.manual_seed(0)
    net, loss_fn = SegmentationUNet(channels=(4, 8)), CEDiceLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = loss_fn(net(image), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
