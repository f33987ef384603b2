"""Dice and SIS across two real processes (gloo): every rank's mean and std are those of all ranks' slices together,
computed here with numpy from the per-slice Dice written out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from csmri.metrics.segmentation import DiceMetric, SemanticInterpretabilityScore

# Per rank, two 1x4 slices of a target with 2 structure pixels and a prediction hitting k of them plus f extra pixels:
# Dice = 2k / (k + f + 2). Rank 0: (k, f) = (2, 0), (1, 0); rank 1: (1, 1), (0, 2) -> 1, 2/3, 1/2, 0.
CASES = {0: [(2, 0), (1, 0)], 1: [(1, 1), (0, 2)]}
DICE = [1.0, 2 / 3, 0.5, 0.0]


def _slices(cases):
    preds, targets = [], []
    for k, f in cases:
        target = torch.tensor([[1, 1, 0, 0]])
        pred = torch.tensor([[int(i < k) for i in range(2)] + [int(i < f) for i in range(2)]])
        preds.append(pred)
        targets.append(target)
    return torch.stack(preds), torch.stack(targets)


def _worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        pred, target = _slices(CASES[rank])
        dice = DiceMetric()
        dice.update(pred, target)
        sis = SemanticInterpretabilityScore()
        sis.update(pred, target, target)  # on "ground truth" the net is perfect: Dice 1 everywhere
        result = {
            "mean": float(dice.compute()),
            "std0": float(dice.compute_std(ddof=0)),
            "std1": float(dice.compute_std(ddof=1)),
            **{k: float(v) for k, v in sis.compute().items()},
        }
        with open(f"{out}.{rank}", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_dice_and_sis_aggregate_over_two_processes(tmp_path):
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    expected = {
        "mean": np.mean(DICE),
        "std0": np.std(DICE, ddof=0),
        "std1": np.std(DICE, ddof=1),
        "sis": np.mean(DICE),
        "dice": np.mean(DICE),
        "dice_gt": 1.0,
        "dice_std": np.std(DICE),
        "dice_gt_std": 0.0,
        "n_slices": 4,
    }
    for rank in (0, 1):
        result = json.loads(open(f"{out}.{rank}").read())
        assert result == pytest.approx(expected, abs=1e-12), rank
