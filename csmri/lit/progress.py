"""A plain progress line per training epoch for runs whose output is not a terminal.

Lightning's progress bar redraws one line in place; written to a log file (``make reproduce > log``, ``nohup``, a
SLURM job) it shows nothing until the run ends. :class:`EpochProgressLog` logs, at the end of every training epoch
(after its validation), one line through the ``csmri`` logger — to the console and the run's ``train.log``::

    epoch 92/200 · 35.1 s/epoch · about 63 min left · train/loss 0.002830 · val/loss 0.002890 · val/psnr 23.84

Seconds per epoch are the mean over the epochs this process trained (a resumed run starts counting again); the time
left is that mean times the epochs left (none without ``trainer.max_epochs``). Only the global rank 0 process logs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

import lightning as L

from csmri.reporting import duration

log = logging.getLogger(__name__)

WHEN = ("auto", "always", "never")
METRICS = ("train/loss", "val/loss", "val/psnr", "val/nmse", "val/dice", "val/lambda")


def _value(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 10 else f"{x:.6f}" if abs(x) < 0.1 else f"{x:.4f}"


class EpochProgressLog(L.Callback):
    """One line per training epoch: epoch n/N, seconds per epoch, the time left and the epoch's metrics.

    Args:
        when: ``auto`` (only when standard output is not a terminal, where the progress bar cannot draw),
            ``always`` or ``never``.
        metrics: the logged metrics to show, those present at the epoch's end, in this order.
    """

    def __init__(self, when: str = "auto", metrics: Sequence[str] = METRICS) -> None:
        if when not in WHEN:
            raise ValueError(f"EpochProgressLog: when must be one of {WHEN}, got {when!r}")
        self.when = when
        self.metrics = tuple(metrics)
        self._epoch_start: float | None = None
        self._seconds: list[float] = []

    def enabled(self) -> bool:
        if self.when == "auto":
            return not sys.stdout.isatty()
        return self.when == "always"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch_start is None:
            return
        self._seconds.append(time.monotonic() - self._epoch_start)
        self._epoch_start = None
        if trainer.global_rank != 0 or not self.enabled():
            return
        log.info(self.line(trainer.current_epoch, trainer.max_epochs, trainer.callback_metrics))

    def line(self, epoch: int, max_epochs: int | None, metrics: dict) -> str:
        """The line for ``epoch`` (Lightning's, 0 = the first) of ``max_epochs`` with the logged ``metrics``."""
        total = max_epochs if max_epochs is not None and max_epochs > 0 else None
        parts = [f"epoch {epoch + 1}/{total}" if total else f"epoch {epoch + 1}"]
        if self._seconds:
            per_epoch = sum(self._seconds) / len(self._seconds)
            parts.append(f"{per_epoch:.1f} s/epoch")
            if total:
                parts.append(f"about {duration(per_epoch * max(total - epoch - 1, 0))} left")
        parts += [f"{name} {_value(float(metrics[name]))}" for name in self.metrics if name in metrics]
        return " · ".join(parts)
