"""Hydra multirun: one run dir per point plus a sweep summary; DDP inside a local multirun is refused."""

from __future__ import annotations

import csv
import subprocess

import pytest
from hydra.errors import ConfigCompositionException

from tests.helpers import compose_config, run_csmri


def _multirun(*args: str) -> subprocess.CompletedProcess:
    return run_csmri("train", "-m", *args)


@pytest.mark.slow(seconds=25)
def test_two_point_sweep_writes_runs_and_summary(phantom_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = _multirun(
        "experiment=stage1",
        f"data.root={phantom_root}",
        "trainer.max_epochs=1",
        "model.net.nf=4,8",
        "logger=csv",
        "data.batch_size=4",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "best.ckpt").is_file()
    rows = list(csv.DictReader(open(sweep / "sweep_summary.csv")))
    assert sorted(r["model.net.nf"] for r in rows) == ["4", "8"]  # only the swept key, no constant overrides
    assert not {"data.root", "trainer.max_epochs", "overrides"} & set(rows[0])
    scores = [float(r["best_score"]) for r in rows]
    assert scores == sorted(scores)  # ranked by the best val/loss (mode min)
    assert all(r["status"] == "finished" and float(r["val/loss"]) > 0 for r in rows)
    assert "model.net.nf" in (sweep / "sweep_summary.md").read_text()

    # skip_finished: the same points are not trained again; a folder holding another point's run is an error
    common = ["experiment=stage1", f"data.root={phantom_root}", "trainer.max_epochs=1", "logger=csv"]
    common += ["data.batch_size=4", f"hydra.sweep.dir={sweep}", "skip_finished=true"]
    again = _multirun(*common, "model.net.nf=4,8")
    log = again.stdout + again.stderr
    assert again.returncode == 0 and log.count("not trained again") == 2, log[-3000:]
    swapped = _multirun(*common, "model.net.nf=8,4")  # job 0 is now nf=8, but its folder holds the nf=4 run
    assert swapped.returncode != 0
    log = swapped.stdout + swapped.stderr
    assert "holds a finished run with other overrides" in log and "model.net.nf=4" in log, log[-3000:]


@pytest.mark.slow
def test_ddp_in_local_multirun_is_refused(phantom_root, tmp_path):
    result = _multirun(
        "experiment=stage1",
        f"data.root={phantom_root}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "model.net.nf=4,8",
        "logger=csv",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode != 0 and "hydra/launcher=slurm" in result.stderr


@pytest.mark.parametrize("sweep", ["alpha", "loss_weights", "optuna"])
def test_ready_made_sweeps_compose(sweep, tmp_path):
    cfg = compose_config("train", ["experiment=stage2", f"sweep={sweep}"], tmp_path)
    assert cfg.experiment_name == "stage2"


def test_slurm_launcher_composes(tmp_path):
    from csmri.config import compose

    cfg = compose("train", ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.gpus_per_node == 4


def test_unknown_sweep_is_an_error():
    with pytest.raises(ConfigCompositionException):
        compose_config("train", ["sweep=nonexistent"])


def test_optuna_sweep_is_seeded_and_resumable(tmp_path):
    from csmri.config import compose

    sweep_dir = tmp_path / "sweep"
    cfg = compose(
        "train", ["experiment=stage2", "sweep=optuna", f"hydra.sweep.dir={sweep_dir}"], return_hydra_config=True
    )
    assert cfg.hydra.sweeper.sampler.seed == 0
    assert cfg.hydra.sweeper.storage == f"sqlite:///{sweep_dir}/optuna.db"
