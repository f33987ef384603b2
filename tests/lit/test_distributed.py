"""Multi-process training on CPU (gloo): `trainer=ddp` works and metrics aggregate over ranks."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch

from csmri.data import MRIDataModule
from csmri.lit import ReconstructionModule
from tests.helpers import run_csmri


def _last_val_psnr(metrics_csv) -> float:
    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get("val/psnr")]
    return float(rows[-1]["val/psnr"])


def _train_ddp(experiment: str, phantom_root, run, *extra: str):
    """`csmri train` with 2 CPU processes (gloo), one short epoch, CSV logs in ``run``."""
    return run_csmri(
        "train",
        f"experiment={experiment}",
        f"data.root={phantom_root}",
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "data.batch_size=2",
        "data.acceleration=4",
        "logger=csv",
        f"hydra.run.dir={run}",
        *extra,
    )


@pytest.mark.slow
def test_ddp_two_processes_match_single_process_validation(phantom_root, tmp_path):
    run = tmp_path / "ddp"
    # fp32 so that the comparison with a single-process validation tests the aggregation, not bf16 rounding
    result = _train_ddp(
        "stage1", phantom_root, run, "model.net.nf=8", "data.eval_batch_size=3", "trainer.precision=32-true"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train_ddp_process_1" in " ".join(p.name for p in run.iterdir())  # a second rank really ran
    ddp_psnr = _last_val_psnr(run / "csv" / "metrics.csv")

    # the same weights validated in one process over the whole val split give the same aggregate
    module = ReconstructionModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    dm = MRIDataModule(str(phantom_root), acceleration=4, eval_batch_size=3)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    single = trainer.validate(module, datamodule=dm, verbose=False)[0]["val/psnr"]
    assert ddp_psnr == pytest.approx(single, abs=1e-4)


@pytest.mark.slow
def test_ddp_stage2_two_processes(phantom_root, stage1_ckpt, tmp_path):
    """The manual-optimisation GAN stage under DDP (find_unused_parameters, toggled optimisers)."""
    from tests.helpers import TINY_STAGE2

    run = tmp_path / "ddp2"
    result = _train_ddp("stage2", phantom_root, run, f"model.net.recon_ckpt={stage1_ckpt}", *TINY_STAGE2)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["refinement.gate"].item() != 0 and state["normalizer.initialised"].item()
