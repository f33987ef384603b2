"""Training callbacks shared by every stage."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

from csmri.errors import TrainingError

log = logging.getLogger(__name__)


class CheckpointOnException(L.Callback):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops with an exception (crash or Ctrl-C).

    Unlike Lightning's ``OnExceptionCheckpoint`` it does not make ``fit(ckpt_path=None)`` resume
    implicitly: resuming stays explicit through ``ckpt_path``. Nothing is saved for a run that has not
    completed a training step since it (re)started, nor after a non-finite loss (the weights are no good):
    the last periodic checkpoint is then the one to resume from.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._start_step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._start_step is None or trainer.global_step <= self._start_step:
            return  # failed before its first training step: nothing worth resuming from
        if isinstance(exception, NonFiniteLossError):
            return
        trainer.save_checkpoint(self.path)
        log.warning("training stopped by %r; saved %s (resume with ckpt_path=%s)", exception, self.path, self.path)


class NonFiniteLossError(TrainingError):
    """A training loss became NaN or infinite."""


class TrainingHealth(L.Callback):
    """Stops training at a non-finite loss and warns when a GAN's discriminator wins outright.

    After every ``check_every_n_steps``-th training step the logged ``train/*loss*`` values must be finite,
    else :class:`NonFiniteLossError` stops the run before the step's state can be checkpointed (this callback
    runs before the checkpoint callbacks), so the last checkpoint on disk is the last good state.
    ``train/d_fake`` (D's mean probability on fakes) below ``d_fake_floor`` for ``divergence_steps`` steps in a
    row logs a warning (once per run): the generator gets no useful gradient.
    """

    def __init__(self, check_every_n_steps: int = 1, d_fake_floor: float = 1e-3, divergence_steps: int = 50) -> None:
        self.every = max(1, int(check_every_n_steps))
        self.d_fake_floor = d_fake_floor
        self.divergence_steps = divergence_steps
        self._low_steps = 0
        self._warned = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every:
            return
        metrics = trainer.callback_metrics
        for name, value in metrics.items():
            if name.startswith("train/") and "loss" in name and not bool(torch.isfinite(value).all()):
                raise NonFiniteLossError(
                    f"training loss `{name}` became {float(value)} at step {trainer.global_step}",
                    "lower module.optimizer.lr or set module.grad_clip, and resume from the last checkpoint "
                    f"in {Path(trainer.default_root_dir)}/checkpoints or the run's checkpoints/ folder "
                    "(ckpt_path=.../last.ckpt)",
                )
        d_fake = metrics.get("train/d_fake")
        if d_fake is None or self._warned:
            return
        self._low_steps = self._low_steps + 1 if float(d_fake) < self.d_fake_floor else 0
        if self._low_steps >= self.divergence_steps:
            self._warned = True
            log.warning(
                "GAN divergence: D(fake) < %g for %d steps in a row (step %d): the discriminator wins outright "
                "and the generator learns little; try a lower discriminator LR or a stronger replay buffer",
                self.d_fake_floor,
                self._low_steps,
                trainer.global_step,
            )


class WandbRunId(L.Callback):
    """Stores the W&B run id in every checkpoint (``checkpoint["wandb_run_id"]``) so that resuming with
    ``ckpt_path=...`` continues the same W&B run (see :func:`csmri.app.train.build_loggers`)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                checkpoint["wandb_run_id"] = logger.version


class RngStateInCheckpoint(L.Callback):
    """Stores the global random states (Python, NumPy, torch CPU and CUDA) in every checkpoint and restores them
    on resume, so a resumed run draws what the uninterrupted run drew: the next epoch's shuffle, the replay
    buffer's choices, dropout. (Lightning restores model, optimiser and loop state but not these.)"""

    KEY = "csmri_rng_states"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state itself)
        checkpoint[self.KEY] = {
            "python": list(random.getstate()[1]) + [random.getstate()[0]],
            "python_gauss": random.getstate()[2],
            "numpy": [kind, torch.as_tensor(keys.astype("int64")), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        import random

        import numpy as np

        states = checkpoint.get(self.KEY)
        if not states:
            return
        python = states["python"]
        random.setstate((python[-1], tuple(python[:-1]), states["python_gauss"]))
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
