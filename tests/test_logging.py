"""W&B (offline, no network) keeps its run across a resume; `csmri compare` works from the CSV logs."""

from __future__ import annotations

import pytest
import torch

from csmri.app.compare import main as compare_main
from tests.helpers import run_csmri


def _train(phantom_root, run_dir, *extra, mode="offline"):
    args = [
        "train",
        "experiment=stage1",
        f"data.root={phantom_root}",
        "model.net.nf=4",
        "data.acceleration=4",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    result = run_csmri(*args, WANDB_MODE=mode)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_wandb_offline_run_id_survives_resume(phantom_root, tmp_path):
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    _train(phantom_root, first, "trainer.max_epochs=1")
    run_id = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["wandb_run_id"]
    assert list((first / "wandb").glob(f"offline-run-*-{run_id}"))  # logged offline, nothing uploaded
    _train(phantom_root, resumed, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt")
    after = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["wandb_run_id"] == run_id and after["epoch"] == 1
    assert list((resumed / "wandb").glob(f"offline-run-*-{run_id}"))


@pytest.mark.slow
def test_compare_runs(phantom_root, tmp_path, capsys):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run, nf in zip(runs, (4, 8), strict=True):
        _train(phantom_root, run, "trainer.max_epochs=2", f"model.net.nf={nf}", "logger=csv", mode="disabled")
    out = tmp_path / "compare.png"
    assert compare_main([*map(str, runs), "--metric", "val/loss", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "val/psnr" in printed and "stage1" in printed
