"""Hardening: one-line user errors, data safety, honest run records, NaN stops, bad inputs (issue 14)."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import torch

from csmri.app.train import train
from csmri.data.sources.phantom import PhantomSource, write_phantom_dataset
from csmri.errors import CheckpointError, ConfigError, DataError, DatasetFolderError, MissingValueError, TrainingError
from tests.helpers import compose_config, run_csmri

TINY_STAGE1 = ["experiment=stage1", "model.nf=4", "data.batch_size=2", "logger=csv", "trainer.max_epochs=1"]


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("csmri: error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


# -- one-line errors ----------------------------------------------------------------------------------


def test_cli_user_errors_are_one_line(tmp_path):
    line = _one_line(run_csmri("train", "experiment=stage2", f"hydra.run.dir={tmp_path}/a"))
    assert "missing required value `model.recon_ckpt`" in line
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["status"] == "failed" and "model.recon_ckpt" in info["error"]
    line = _one_line(run_csmri("train", "data=h5", f"data.root={tmp_path}/none", f"hydra.run.dir={tmp_path}/b"))
    assert "no dataset at" in line
    info = json.loads((tmp_path / "b" / "run_info.json").read_text())
    assert info["status"] == "failed" and "no dataset at" in info["error"]
    assert not (tmp_path / "b" / "checkpoints" / "on_exception.ckpt").exists()
    result = run_csmri("train", "+trainer.max_epoch=1", f"data.root={tmp_path}/p", f"hydra.run.dir={tmp_path}/c")
    assert "did you mean `trainer.max_epochs`" in _one_line(result)
    assert not (tmp_path / "p").exists()  # nothing prepared for a run that could not start
    data_dir = str(tmp_path / "data")  # the default data root, which a run that cannot start must leave alone
    result = run_csmri("eval", "methods=[zero_filled,unet]", f"hydra.run.dir={tmp_path}/d", CSMRI_DATA_DIR=data_dir)
    line = _one_line(result)
    assert "unknown method `unet`" in line and "data" not in line.split("configured methods:")[1]
    assert not (tmp_path / "data").exists()
    debug = run_csmri("train", "experiment=stage2", f"hydra.run.dir={tmp_path}/f", CSMRI_DEBUG="1")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    version = run_csmri("--version")
    assert version.returncode == 0 and version.stdout.startswith("csmri ")


def test_eval_reference_defaults_to_last_and_must_be_a_method(tmp_path):
    from csmri.eval.runner import build_methods, reference_method

    cfg = compose_config("eval", ["methods=[zero_filled,recnet]"], tmp_path)
    with pytest.raises(ConfigError, match="recnet.ckpt"):
        build_methods(cfg, torch.device("cpu"))
    cfg = compose_config("eval", ["methods=[recnet]", f"recnet.ckpt={tmp_path}/missing.ckpt"], tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_methods(cfg, torch.device("cpu"))

    cfg = compose_config("eval", ["methods=[zero_filled,recnet]"], tmp_path)
    assert reference_method(cfg) == "recnet"
    cfg = compose_config("eval", ["methods=[zero_filled,recnet]", "reference=refinement"], tmp_path)
    with pytest.raises(ConfigError, match="not among methods"):
        reference_method(cfg)


def test_missing_value_and_trainer_typo_in_process(tmp_path, phantom_root):
    with pytest.raises(MissingValueError, match="model.recon_ckpt"):
        train(compose_config("train", ["experiment=stage2"], tmp_path / "a"))
    cfg = compose_config("train", [*TINY_STAGE1, f"data.root={phantom_root}", "+trainer.max_epoch=1"], tmp_path / "b")
    with pytest.raises(ConfigError, match="max_epochs"):
        train(cfg)
    assert json.loads((tmp_path / "b" / "run_info.json").read_text())["status"] == "failed"


def test_unwritable_output_dir_fails_before_training(tmp_path, phantom_root):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root ignores permissions: a file where the folder should be
        blocker.write_text("")
        out = blocker / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "run"
    with pytest.raises(TrainingError, match="cannot write into the run folder"):
        train(compose_config("train", [*TINY_STAGE1, f"data.root={phantom_root}"], out))


def test_dagan_size_follows_folder_sources():
    from csmri.config import compose

    for overrides, size in ((["data=folder", "data.source.size=[96,96]"], 96), (["data=acdc"], 256)):
        cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", *overrides])
        assert cfg.model.generator.size == size
    cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", "data=folder"])
    with pytest.raises(Exception, match="not known before it is prepared"):
        _ = cfg.model.generator.size


# -- data safety --------------------------------------------------------------------------------------


def test_phantom_is_never_written_into_a_foreign_folder(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "case1.nii.gz").write_bytes(b"user data")
    with pytest.raises(DatasetFolderError, match="data=folder"):
        PhantomSource(patients=3, size=32, slices=1).prepare(scans)
    assert sorted(p.name for p in scans.iterdir()) == ["case1.nii.gz"]


def test_phantom_settings_are_recorded_and_compared(tmp_path):
    root = tmp_path / "p"
    PhantomSource(patients=3, size=32, slices=1).prepare(root)
    assert json.loads((root / "meta.json").read_text())["generator"]["size"] == 32
    assert PhantomSource(patients=3, size=32, slices=1).prepare(root) == root
    with pytest.raises(DataError, match="size=32"):
        PhantomSource(patients=3, size=64, slices=1).prepare(root)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_interrupted_phantom_leaves_no_dataset(tmp_path, monkeypatch):
    import csmri.data.sources.phantom.source as source

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(source, "_swap_into_place", boom)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "p", n_patients=3, size=32, n_slices=1, progress=False)
    assert not (tmp_path / "p" / "meta.json").exists()


# -- bad inputs ---------------------------------------------------------------------------------------


def _copy(phantom_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(phantom_root, root)
    return root, next((root / "train").glob("*.h5"))


@pytest.mark.parametrize("damage", ["truncated", "dtype", "label_shape", "meta_json", "empty_folder"])
def test_bad_prepared_datasets_are_one_line_errors(phantom_root, tmp_path, damage):
    from csmri.data import SliceDataset

    root, victim = _copy(phantom_root, tmp_path)
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:300])
    elif damage == "dtype":
        with h5py.File(victim, "r+") as f:
            image = np.abs(f["image"][()]).astype(np.float32)
            del f["image"]
            f["image"] = image
    elif damage == "label_shape":
        with h5py.File(victim, "r+") as f:
            del f["label"]
            f["label"] = np.zeros((1, 4, 4), np.uint8)
    elif damage == "meta_json":
        (root / "meta.json").write_text("{not json")
    else:
        root = tmp_path / "empty"
        root.mkdir()
    with pytest.raises(DataError) as info:
        SliceDataset(root, "train")
    message = str(info.value)
    assert "\n" not in info.value.message
    assert (victim.name if damage in {"truncated", "dtype", "label_shape"} else str(root)) in message


def test_nan_voxels_in_raw_scans_name_the_file(tmp_path):
    from csmri.data.sources.folder import FolderSource

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        volume = np.random.default_rng(i).random((16, 16, 2)).astype(np.float32)
        if i == 1:
            volume[3, 3, 0] = np.nan
        np.save(raw / f"case{i}.npy", volume)
    with pytest.raises(DataError, match="case1"):
        try:
            FolderSource(labels="none", progress=False).prepare(raw)
        except Exception as err:  # BadInputError is a user error csmri recognises
            from csmri.errors import user_error

            raise (user_error(err) or err) from err
    assert not (raw / ".csmri_prepared").exists() or not any((raw / ".csmri_prepared").rglob("meta.json"))


# -- NaN loss -----------------------------------------------------------------------------------------


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, phantom_root):
    out = tmp_path / "run"
    cfg = compose_config(
        "train",
        [
            *TINY_STAGE1,
            f"data.root={phantom_root}",
            "trainer.max_epochs=3",
            "callbacks.last_checkpoint.every_n_train_steps=1",
            "+callbacks.fault._target_=tests.faults.PoisonWeights",
            "+callbacks.fault.at_step=3",
        ],
        out,
    )
    with pytest.raises(TrainingError, match="train/loss"):
        train(cfg)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (out / "checkpoints" / "on_exception.ckpt").exists()
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "failed" and "became nan" in info["error"]


def test_nan_guard_has_no_per_step_sync_and_reads_at_its_cadence(monkeypatch):
    """Each step's losses go into a record on the device (no host read, no logged metrics read); the record is
    read every `check_every_n_steps` batches and before any checkpoint is written."""
    from csmri.errors import NonFiniteLossError
    from csmri.lit.callbacks import TrainingHealth

    class Trainer:
        global_step = 0
        default_root_dir = "."
        log_every_n_steps = 50

        @property
        def callback_metrics(self):  # reading them converts progress-bar metrics to numbers: a sync
            raise AssertionError("the logged metrics were read")

    def refuse(*args, **kwargs):
        raise AssertionError("a host-device sync in a training step")

    def steps(health: TrainingHealth, trainer: Trainer, losses: list[float], sync_free: bool = True) -> None:
        with monkeypatch.context() as patch:
            if sync_free:  # every way of reading a tensor's value on the host fails
                for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
                    patch.setattr(torch.Tensor, name, refuse)
            for loss in losses:
                trainer.global_step += 2  # a GAN step: both optimisers
                outputs = {"train/loss_g": torch.tensor(loss), "train/loss_d": torch.tensor(0.7)}
                health.on_train_batch_end(trainer, None, outputs, None, trainer.global_step)

    losses = [1.0, float("nan"), 0.5]  # a NaN at step 4, then finite again
    trainer, health = Trainer(), TrainingHealth(check_every_n_steps=4)
    steps(health, trainer, losses)  # three batches: nothing read yet
    with pytest.raises(NonFiniteLossError, match=r"`train/loss_g` became nan at step 4"):
        health.on_save_checkpoint(trainer, None, {})  # no checkpoint after a non-finite loss
    trainer, health = Trainer(), TrainingHealth(check_every_n_steps=4)
    steps(health, trainer, losses)
    with pytest.raises(NonFiniteLossError, match="at step 4"):
        steps(health, trainer, [0.4], sync_free=False)  # the 4th batch reads the record
    health = TrainingHealth()  # default cadence: the trainer's log_every_n_steps
    trainer = Trainer()
    trainer.log_every_n_steps = 2
    steps(health, trainer, [1.0], sync_free=True)
    with pytest.raises(NonFiniteLossError, match="became inf at step 4"):
        steps(health, trainer, [float("inf")], sync_free=False)


def test_nan_on_one_process_stops_every_process():
    """In a distributed run the check is or'ed over processes: a rank whose own losses are finite stops too,
    instead of waiting in its next collective for the rank that stopped."""
    from csmri.errors import NonFiniteLossError
    from csmri.lit.callbacks import TrainingHealth

    class Strategy:
        def __init__(self, others_bad: bool) -> None:
            self.others_bad, self.asked = others_bad, []

        def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
            self.asked.append((decision, all))
            return decision or self.others_bad

    class Trainer:
        global_step = 1
        default_root_dir = "."
        world_size = 2

    for others_bad in (False, True):
        trainer, health = Trainer(), TrainingHealth(check_every_n_steps=10)
        trainer.strategy = Strategy(others_bad)
        health.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.3)}, None, 0)
        if others_bad:
            with pytest.raises(NonFiniteLossError, match="another process"):
                health.check(trainer)
        else:
            health.check(trainer)
        assert trainer.strategy.asked == [(False, False)]  # asked once, as `any`
    trainer, health = Trainer(), TrainingHealth(check_every_n_steps=10)
    trainer.strategy = Strategy(False)
    health.on_train_batch_end(trainer, None, {"loss": torch.tensor(float("nan"))}, None, 0)
    with pytest.raises(NonFiniteLossError, match="became nan at step 1"):
        health.check(trainer)
    assert trainer.strategy.asked == [(True, False)]  # the bad rank takes part in the collective before raising


def test_gan_divergence_is_a_warning(caplog):
    import logging

    from csmri.lit.callbacks import TrainingHealth

    class Trainer:
        global_step = 0
        callback_metrics = {"train/loss_g": torch.tensor(1.0), "train/d_fake": torch.tensor(1e-5)}
        default_root_dir = "."

    health = TrainingHealth(check_every_n_steps=1, divergence_steps=3)
    with caplog.at_level(logging.WARNING):
        for step in range(4):
            Trainer.global_step = step
            health.on_train_batch_end(Trainer, None, None, None, step)
    assert sum("GAN divergence" in r.message for r in caplog.records) == 1


# -- tools --------------------------------------------------------------------------------------------


def test_sync_wandb_finds_offline_runs_and_needs_credentials(tmp_path, monkeypatch, capsys):
    from csmri.app import sync_wandb

    assert sync_wandb.main([str(tmp_path)]) == 0 and "nothing to upload" in capsys.readouterr().out
    (tmp_path / "stage1" / "run" / "wandb" / "offline-run-2024").mkdir(parents=True)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert sync_wandb.offline_runs([tmp_path]) == [tmp_path / "stage1" / "run" / "wandb" / "offline-run-2024"]
    assert sync_wandb.main([str(tmp_path)]) == 2 and "wandb login" in capsys.readouterr().err


def test_optuna_sweep_is_seeded_and_resumable(tmp_path):
    from csmri.config import compose

    sweep_dir = tmp_path / "sweep"
    cfg = compose(
        "train", ["experiment=stage2", "sweep=optuna", f"hydra.sweep.dir={sweep_dir}"], return_hydra_config=True
    )
    assert cfg.hydra.sweeper.sampler.seed == 0
    assert cfg.hydra.sweeper.storage == f"sqlite:///{sweep_dir}/optuna.db"


def test_help_lists_only_the_apps_groups():
    result = run_csmri("eval", "--help")
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "data:" in groups and "experiment:" not in groups and "method" not in groups
    completion = run_csmri("train", "--shell-completion", "install=bash")
    assert completion.returncode == 0 and completion.stdout.rstrip().endswith("hydra_bash_completion csmri")
    query = run_csmri("-sc", "query=bash", COMP_LINE="csmri train experiment=st")
    assert "experiment=stage1" in query.stdout.split()
