"""SIS recomputed by hand from what ``csmri eval`` wrote, for the end-to-end SIS tests.

Only the segmentation network's forward pass is the project's; everything else is written out here from the
definition (Seitzer et al. 2018, DESIGN §2): over the test slices whose ground-truth label contains the structure,
foreground Dice ``2|P∩T| / (|P| + |T|)`` (labels > 0 merged) of the network's prediction, per slice, with numpy;
``SIS = mean Dice on a method's reconstructions / mean Dice on the ground-truth images of the same slices``.
An ensemble of nets segments by the argmax of the members' mean class probabilities (softmax of each net's logits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from csmri.data import SliceDataset
from csmri.lit.segmentation import SegmentationModule


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Foreground Dice of two label maps ``(H, W)`` (every label > 0 is foreground), by its definition."""
    p, t = pred > 0, label > 0
    return 2.0 * float(np.logical_and(p, t).sum()) / float(p.sum() + t.sum())


def segment(modules: list[SegmentationModule], magnitude: np.ndarray) -> np.ndarray:
    """Label map ``(H, W)`` of the segmentation net(s) for a float32 magnitude image ``(H, W)`` (the net's documented
    input: the magnitude as one channel, no rescaling); several nets: argmax of their mean softmax probabilities."""
    x = torch.from_numpy(np.ascontiguousarray(magnitude, dtype=np.float32))[None, None]
    with torch.no_grad():
        probabilities = [np.exp(z - z.max(axis=0)) for z in (m.net(x)[0].double().numpy() for m in modules)]
    mean = np.mean([p / p.sum(axis=0) for p in probabilities], axis=0)
    return mean.argmax(axis=0)


def hand_sis(eval_dir: Path, ckpt: Path | list[Path], layout_dir: Path, split: str = "test") -> dict[str, dict]:
    """``{method: {"sis", "dice", "dice_gt", "per_slice"}}`` (``per_slice``: ``{key: Dice}``) recomputed from
    ``eval_dir/recons.npz`` (the magnitudes ``csmri eval`` reconstructed, see :mod:`csmri.eval.recons`) and the labels
    of ``split`` read from the dataset itself.

    Checks on the way that ``recons.npz`` holds exactly the structure slices of ``split``.
    """
    dataset = SliceDataset(layout_dir, split)
    labels = {}
    for i in range(len(dataset)):
        item = dataset[i]
        label = item["label"].numpy()
        if (label > 0).any():
            labels[item["key"]] = label
    assert labels, "no test slice contains the structure"
    images: dict[str, dict[str, np.ndarray]] = {}
    with np.load(eval_dir / "recons.npz") as data:
        for name in data.files:
            method, _, key = name.partition("__")
            images.setdefault(method, {})[key.replace("~", "/")] = data[name]
    stored_labels = images.pop("label")
    assert stored_labels.keys() == labels.keys()
    gt = images.pop("ground_truth")
    assert gt.keys() == labels.keys()
    ckpts = ckpt if isinstance(ckpt, list) else [ckpt]
    module = [SegmentationModule.load_from_checkpoint(c, map_location="cpu").eval() for c in ckpts]
    dice_gt = {k: dice(segment(module, gt[k]), labels[k]) for k in labels}
    mean_gt = float(np.mean(list(dice_gt.values())))
    result = {}
    for method, per_key in images.items():
        assert per_key.keys() == labels.keys(), method
        d = {k: dice(segment(module, per_key[k]), labels[k]) for k in labels}
        mean = float(np.mean(list(d.values())))
        result[method] = {"sis": mean / mean_gt, "dice": mean, "dice_gt": mean_gt, "per_slice": d}
    return result
