"""Resuming from a checkpoint written in the middle of an epoch reproduces an uninterrupted run bit for bit.

A run is stopped by an exception after ``k`` training batches (the ``on_exception.ckpt`` that
:class:`csmri.lit.callbacks.CheckpointOnException` writes), resumed with ``ckpt_path`` and trained to the same end as
a run that was never stopped: every network weight, buffer (normaliser constants, replay images, batch-norm running
statistics) and optimiser state must be identical. Deterministic CPU, ``32-true``, ``num_workers=0``.
"""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from csmri.app.train import train
from tests.helpers import ADVERSARIAL, TINY_STAGE2, compose_config

DETERMINISTIC = [
    "trainer.deterministic=true",
    "trainer.precision=32-true",
    "trainer.accelerator=cpu",
    "data.num_workers=0",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "data.eval_batch_size=6",
]


class Interrupted(RuntimeError):
    """Raised by :class:`StopAfterBatches` (stands for a crash or Ctrl-C)."""


class StopAfterBatches(L.Callback):
    """Raises :class:`Interrupted` before training batch ``at`` (0-based over the run): ``at`` batches completed."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.total.completed == self.at:
            raise Interrupted(f"stopped after {self.at} training batches")


# experiment -> (overrides, training batches per epoch)
SETUPS = {
    "stage2": (["experiment=stage2", *TINY_STAGE2, "data.batch_size=4", "data.acceleration=4"], 3),
    "dagan": (["experiment=dagan", *ADVERSARIAL["dagan"], "data.batch_size=4", "data.acceleration=4"], 3),
    "segnet": (["experiment=segnet", "model.net.channels=[4,8]", "data.batch_size=3", "model.augment=true"], 4),
}


def _config(experiment, phantom_root, stage1_ckpt, out, *extra):
    overrides, _ = SETUPS[experiment]
    if experiment == "stage2":
        overrides = [*overrides, f"model.net.recon_ckpt={stage1_ckpt}"]
    return compose_config("train", [*overrides, f"data.root={phantom_root}", *DETERMINISTIC, *extra], out)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _differences(a, b, prefix=""):
    """Paths where two nested checkpoint structures differ (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
        return [] if same and torch.equal(a, b) else [prefix]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{prefix}: keys {sorted(set(a) ^ set(b), key=str)[:4]}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{prefix}.{k}")]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{prefix}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{prefix}[{i}]")]
    return [] if a == b else [prefix]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(SETUPS))
def test_mid_epoch_resume_is_bit_exact(experiment, phantom_root, stage1_ckpt, tmp_path):
    per_epoch = SETUPS[experiment][1]
    epochs, stop_at = 2, per_epoch + 1  # stopped one batch into the second epoch
    straight = tmp_path / "straight"
    train(_config(experiment, phantom_root, stage1_ckpt, straight, f"trainer.max_epochs={epochs}"))

    run = tmp_path / "run"
    stop = [f"+callbacks.stop._target_={__name__}.StopAfterBatches", f"+callbacks.stop.at={stop_at}"]
    with pytest.raises(Interrupted):
        train(_config(experiment, phantom_root, stage1_ckpt, run, f"trainer.max_epochs={epochs}", *stop))
    stopped = run / "checkpoints" / "on_exception.ckpt"
    assert _load(stopped)["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == stop_at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(
            _config(experiment, phantom_root, stage1_ckpt, run, f"trainer.max_epochs={epochs}", f"ckpt_path={stopped}")
        )
    # the epoch is continued, not restarted: Lightning's warning that a plain DataLoader cannot do that is not shown
    assert not [w for w in caught if "dataloader is not resumable" in str(w.message)]

    expected, actual = _load(straight / "checkpoints" / "last.ckpt"), _load(run / "checkpoints" / "last.ckpt")
    assert actual["global_step"] == expected["global_step"]
    assert not _differences(expected["state_dict"], actual["state_dict"], "state_dict")
    assert not _differences(expected["optimizer_states"], actual["optimizer_states"], "optimizer_states")
