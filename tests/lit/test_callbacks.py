"""TrainingHealth (csmri/lit/callbacks.py): a non-finite loss stops training with a clear error and no checkpoint of
the bad state, without a host-device sync per step, on every process; a GAN's divergence is a warning."""

from __future__ import annotations

import json

import pytest
import torch

from csmri.app.train import train
from csmri.errors import TrainingError
from tests.helpers import train_config


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, phantom_root):
    out = tmp_path / "run"
    cfg = train_config(
        [
            "experiment=stage1",
            "model.net.nf=4",
            "data.batch_size=2",
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
