"""Training callbacks shared by every stage."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class CheckpointOnException(L.Callback):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops with an exception (crash or Ctrl-C).

    Unlike Lightning's ``OnExceptionCheckpoint`` it does not make ``fit(ckpt_path=None)`` resume
    implicitly: resuming stays explicit through ``ckpt_path``.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.path)
        log.warning("training stopped by %r; saved %s (resume with ckpt_path=%s)", exception, self.path, self.path)


class WandbRunId(L.Callback):
    """Stores the W&B run id in every checkpoint (``checkpoint["wandb_run_id"]``) so that resuming with
    ``ckpt_path=...`` continues the same W&B run (see :func:`csmri.app.train.build_loggers`)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                checkpoint["wandb_run_id"] = logger.version
