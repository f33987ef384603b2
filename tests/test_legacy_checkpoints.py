"""Checkpoints written by csmri 0.1 before the restructure still load and evaluate to the same numbers.

The fixtures in ``tests/fixtures/legacy_v0_1`` were written by commit 91ff80e (class paths of that layout, optimiser
settings as ``lr``/``betas`` hyper-parameters): a tiny stage-1 RecNet and a stage-2 model on a 4-patient 32x32
phantom (seed 0, 2 slices), and that commit's ``csmri eval`` table of them at 4x.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csmri.data.sources.phantom import write_phantom_dataset
from csmri.eval.runner import evaluate
from tests.helpers import compose_config

LEGACY = Path(__file__).parent / "fixtures" / "legacy_v0_1"


@pytest.mark.slow
def test_legacy_checkpoints_evaluate_as_before(tmp_path):
    root = write_phantom_dataset(tmp_path / "data", progress=False, n_patients=4, size=32, n_slices=2, seed=0)
    overrides = [
        f"data.root={root}",
        "data.acceleration=4",
        "methods=[zero_filled,recnet,refinement]",
        f"recnet.ckpt={LEGACY / 'stage1.ckpt'}",
        f"refinement.ckpt={LEGACY / 'stage2.ckpt'}",
        "wandb.enabled=false",
    ]
    evaluate(compose_config("eval", overrides, tmp_path / "eval"))
    # A regression pin on purpose: table.json is commit 91ff80e's own `csmri eval` output for these files. What this
    # test guards is that the numbers do not move (old checkpoints load, same masks, same metrics), not that they are
    # right; their correctness is pinned independently (tests/metrics against scikit-image, tests/physics by numpy).
    before = {r["method"]: r for r in json.loads((LEGACY / "table.json").read_text())["rows"]}
    after = {r["method"]: r for r in json.loads((tmp_path / "eval" / "table.json").read_text())["rows"]}
    for method in ("zero_filled", "recnet", "refinement"):
        assert after[method]["psnr_mean"] == pytest.approx(before[method]["psnr_mean"], abs=1e-3)
        assert after[method]["ssim_mean"] == pytest.approx(before[method]["ssim_mean"], abs=1e-4)
