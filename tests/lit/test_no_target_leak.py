"""No reconstruction method sees the ground truth: every module's output depends on the undersampled data only."""

from __future__ import annotations

import pytest
import torch

from csmri.app.train import build_module
from tests.helpers import ADVERSARIAL, TINY_STAGE2, compose_config, simulated_batch

EXPERIMENTS = {
    "stage1": ["model.net.nf=8"],
    "stage2": TINY_STAGE2,
    "dagan": [*ADVERSARIAL["dagan"], "model.net.perceptual.size=64"],  # joint: the same module class as DAGAN
}


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_reconstructions_do_not_depend_on_the_target(experiment, phantom_root, stage1_ckpt, tmp_path):

    overrides = [f"experiment={experiment}", f"data.root={phantom_root}", *EXPERIMENTS[experiment]]
    if experiment == "stage2":
        overrides.append(f"model.net.recon_ckpt={stage1_ckpt}")
    module = build_module(compose_config("train", overrides, tmp_path)).eval()
    batch = simulated_batch(phantom_root)
    with torch.no_grad():
        output, _ = module.generate(batch)
        swapped, _ = module.generate({**batch, "target": torch.randn_like(batch["target"])})
        other, _ = module.generate({**batch, "zero_filled": batch["zero_filled"].flip(-1)})
    assert torch.equal(output, swapped), "the reconstruction changed with the ground truth"
    assert not torch.equal(output, other), "the reconstruction ignores the zero-filled image"
