"""Foreground Dice and the semantic interpretability score (SIS) of Seitzer et al. (MICCAI 2018).

Conventions:

* Label maps are integer tensors ``(B, H, W)`` (or ``(B, 1, H, W)``, or bool) with 0 = background.
  Predictions must already be label maps (``logits.argmax(1)``); float inputs are rejected so that
  probabilities are never silently truncated.
* **Foreground Dice** (:func:`foreground_dice`), one value per slice, background ignored:

  - ``classes=None``: every label > 0 is merged into one foreground; ``Dice = 2|P∩T| / (|P| + |T|)``.
  - ``classes=[c1, c2, ...]``: the mean of the per-class Dice over the listed classes that occur in the
    prediction *or* the target of that slice; a class absent from both is skipped (it is neither right
    nor wrong), a class predicted but absent from the target scores 0.
  - A slice (or class set) empty in **both** prediction and target has Dice **1.0** (perfect
    agreement on "nothing there"). SIS never sees such slices: only slices whose *target* contains the
    structure are scored.
  - ``eps`` (default 0) is an optional smoothing ``(2|P∩T| + eps) / (|P| + |T| + eps)``.

* **SIS** (:class:`SemanticInterpretabilityScore`): over the test slices whose ground-truth label
  contains the structure, ``SIS = mean Dice(seg(recon), label) / mean Dice(seg(ground truth), label)``
  — the frozen segmentation net's Dice on the reconstructions, normalised by its Dice on the
  fully-sampled images of the *same* slices. The normaliser is computed from the data, never
  hard-coded, so SIS of the ground truth itself is exactly 1.

Both metrics keep float64 ``sum``/``sum_sq`` and integer ``count`` states summed across batches and
DDP ranks (``dist_reduce_fx="sum"``): the result equals the metric over the concatenation of all
batches on all ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "as_label_map",
    "has_structure",
    "foreground_dice",
    "DiceMetric",
    "SemanticInterpretabilityScore",
]


def as_label_map(x: Tensor, name: str = "labels") -> Tensor:
    """Validate an integer/bool label map ``(B, H, W)`` or ``(B, 1, H, W)`` -> int64 ``(B, H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{name} must be an integer label map, got dtype {x.dtype}; "
            "take logits.argmax(dim=1) (or threshold probabilities) first"
        )
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x.long()


def _foreground_masks(labels: Tensor, classes: Sequence[int] | None) -> Tensor:
    """Boolean masks ``(B, C, H, W)``: ``C = 1`` (labels > 0) when ``classes`` is None."""
    if classes is None:
        return (labels > 0).unsqueeze(1)
    cls = list(classes)
    if not cls:
        raise ValueError("classes must be None or a non-empty list of foreground labels")
    if any(int(c) <= 0 for c in cls):
        raise ValueError(f"classes are foreground labels and must be > 0 (0 is background), got {cls}")
    ids = torch.as_tensor(cls, dtype=labels.dtype, device=labels.device).view(1, -1, 1, 1)
    return labels.unsqueeze(1) == ids


def has_structure(target: Tensor, classes: Sequence[int] | None = None) -> Tensor:
    """Bool ``(B,)``: the target slice contains the structure (any label > 0, or any of ``classes``)."""
    masks = _foreground_masks(as_label_map(target, "target"), classes)
    return masks.flatten(1).any(dim=1)


def foreground_dice(pred: Tensor, target: Tensor, classes: Sequence[int] | None = None, eps: float = 0.0) -> Tensor:
    """Foreground Dice per slice, ``(B, H, W) x (B, H, W)`` integer label maps -> float64 ``(B,)`` in [0, 1].

    ``classes=None`` merges all labels > 0 into one foreground; a list averages the per-class Dice over
    the listed classes present in pred or target (see the module docstring). Background is ignored.
    Empty prediction and empty target give 1.0.
    """
    p, t = as_label_map(pred, "pred"), as_label_map(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}")
    pm, tm = _foreground_masks(p, classes), _foreground_masks(t, classes)
    inter = (pm & tm).flatten(2).sum(-1).to(torch.float64)  # (B, C)
    total = (pm.flatten(2).sum(-1) + tm.flatten(2).sum(-1)).to(torch.float64)
    present = total > 0
    dice = torch.where(present, (2.0 * inter + eps) / (total + eps).clamp_min(1e-300), torch.ones_like(total))
    n_present = present.sum(dim=1)
    mean_present = (dice * present).sum(dim=1) / n_present.clamp_min(1)
    return torch.where(n_present > 0, mean_present, torch.ones_like(mean_present))


class _StructureMetric(Metric):
    """Base: sums of per-slice values over slices whose target contains the structure."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, classes: Sequence[int] | None = None, eps: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.eps = float(eps)

    def _add_sums(self, *names: str) -> None:
        for name in names:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _dice_on_structure(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-slice Dice ``(n,)`` of the slices whose target contains the structure."""
        t = as_label_map(target, "target")
        keep = has_structure(t, self.classes)
        return foreground_dice(as_label_map(pred, "pred")[keep], t[keep], self.classes, self.eps).detach()

    def _std(self, sum_name: str, sum_sq_name: str, ddof: int) -> Tensor:
        """Std from the (already synchronised) states; call inside ``compute`` or :meth:`_synced_std`."""
        n = self.count.to(torch.float64)
        mean = getattr(self, sum_name) / n
        var = (getattr(self, sum_sq_name) - n * mean.square()) / (n - ddof)
        return var.clamp_min(0.0).sqrt()

    def _synced_std(self, sum_name: str, sum_sq_name: str, ddof: int) -> Tensor:
        """:meth:`_std` after synchronising the states across DDP ranks (outside ``compute``)."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            return self._std(sum_name, sum_sq_name, ddof)


class DiceMetric(_StructureMetric):
    """Mean (``compute()``) and std (``compute_std()``) of the per-slice foreground Dice.

    ``update(pred, target)`` with integer label maps ``(B, H, W)``; only slices whose target contains
    the structure are counted (others are skipped, so a batch may add nothing). ``nan`` before any
    counted slice. DDP-correct: states are summed across ranks.
    """

    higher_is_better = True
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    sum: Tensor
    sum_sq: Tensor
    count: Tensor

    def __init__(self, classes: Sequence[int] | None = None, eps: float = 0.0, **kwargs) -> None:
        super().__init__(classes, eps, **kwargs)
        self._add_sums("sum", "sum_sq")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the structure-containing slices of one batch."""
        d = self._dice_on_structure(pred, target)
        self.sum += d.sum()
        self.sum_sq += d.square().sum()
        self.count += d.numel()

    def compute(self) -> Tensor:
        """Mean Dice over the counted slices (float64 scalar)."""
        return self.sum / self.count

    def compute_std(self, ddof: int = 0) -> Tensor:
        """Std of the per-slice Dice (``ddof=0``: population std, as ``numpy.std``)."""
        return self._synced_std("sum", "sum_sq", ddof)


class SemanticInterpretabilityScore(_StructureMetric):
    """SIS = mean Dice of the segmentation net on reconstructions / its mean Dice on ground truth.

    ``update(pred_on_recon, pred_on_ground_truth, target)``: the frozen segmentation net's label maps
    on the reconstructions and on the fully-sampled images of the same slices, and the ground-truth
    label maps, all integer ``(B, H, W)``. Only slices whose target contains the structure count.
    ``compute()`` -> dict of float64 scalars ``sis``, ``dice`` (mean Dice on reconstructions),
    ``dice_gt`` (mean Dice on ground truth), ``dice_std``, ``dice_gt_std`` (population std) and the
    int64 ``n_slices``. ``sis`` is ``nan`` with no counted slice (or ``inf``/``nan`` if the net's Dice
    on ground truth is 0).
    """

    higher_is_better = True

    sum_recon: Tensor
    sum_sq_recon: Tensor
    sum_gt: Tensor
    sum_sq_gt: Tensor
    count: Tensor

    def __init__(self, classes: Sequence[int] | None = None, eps: float = 0.0, **kwargs) -> None:
        super().__init__(classes, eps, **kwargs)
        self._add_sums("sum_recon", "sum_sq_recon", "sum_gt", "sum_sq_gt")

    def update(self, pred_on_recon: Tensor, pred_on_ground_truth: Tensor, target: Tensor) -> None:
        """Add the structure-containing slices of one batch."""
        d_recon = self._dice_on_structure(pred_on_recon, target)
        d_gt = self._dice_on_structure(pred_on_ground_truth, target)
        self.sum_recon += d_recon.sum()
        self.sum_sq_recon += d_recon.square().sum()
        self.sum_gt += d_gt.sum()
        self.sum_sq_gt += d_gt.square().sum()
        self.count += d_recon.numel()

    def compute(self) -> dict[str, Tensor]:
        """``{"sis", "dice", "dice_gt", "dice_std", "dice_gt_std", "n_slices"}`` over all counted slices."""
        dice = self.sum_recon / self.count
        dice_gt = self.sum_gt / self.count
        return {
            "sis": dice / dice_gt,
            "dice": dice,
            "dice_gt": dice_gt,
            "dice_std": self._std("sum_recon", "sum_sq_recon", 0),
            "dice_gt_std": self._std("sum_gt", "sum_sq_gt", 0),
            "n_slices": self.count.clone(),
        }
