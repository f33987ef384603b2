"""The validation metrics that choose a baseline's checkpoint are per-slice means over the whole validation split.

Stage 1 keeps the epoch of lowest ``val/loss`` (the MSE, RecNet's row and stage 2's frozen R) and DAGAN that of
lowest ``val/nmse`` (its protocol). Lightning averages a logged value over an epoch weighted by each call's
``batch_size``; a wrong weight makes the last, smaller batch count as much as a full one and can move the chosen
epoch. The expected values are computed here one slice at a time.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from csmri.app.train import build_module
from csmri.losses.dagan import dagan_nmse_01
from csmri.physics import complex_to_channels
from tests.helpers import STAGE1_SMALL, tiny_dagan_overrides, train_config


def _stage1_loss(module, output, batch):
    return module.loss_fn(output, complex_to_channels(batch["target"]))


def _dagan_nmse(module, output, batch):
    return dagan_nmse_01(output, batch["target"])


def _stage1_overrides(phantom_root, *extra):
    return ["experiment=stage1", f"data.root={phantom_root}", *STAGE1_SMALL, *extra]


CASES = {  # experiment: (its overrides on the test phantom, its selection metric, that metric of one batch)
    "stage1": (_stage1_overrides, "val/loss", _stage1_loss),
    "dagan": (tiny_dagan_overrides, "val/nmse", _dagan_nmse),
}


@pytest.mark.parametrize("experiment", sorted(CASES))
def test_selection_metric_is_the_per_slice_mean_over_an_uneven_epoch(experiment, phantom_root, tmp_path):
    overrides, metric, per_slice = CASES[experiment]
    # 6 validation slices: batches of 4 and 2
    cfg = train_config(overrides(phantom_root, "data.acceleration=4", "data.eval_batch_size=4"), tmp_path)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    (logged,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    datamodule.eval_batch_size = 1  # the same slices and fixed masks (keyed by slice), one at a time
    values = []
    module.eval()
    with torch.no_grad():
        for raw in datamodule.val_dataloader():
            batch = datamodule.on_after_batch_transfer(raw, 0)  # not training: the fixed evaluation masks
            output, _ = module.generate(batch)
            values.append(per_slice(module, output.float(), batch).item())
    assert len(values) == 6
    assert max(values) - min(values) > 0.05 * max(values)  # slices differ: a batch-weighting error shows
    assert logged[metric] == pytest.approx(sum(values) / len(values), rel=1e-5)
