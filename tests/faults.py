"""Test-only fault injection, loaded into runs with Hydra overrides (``+callbacks.fault._target_=...``)."""

from __future__ import annotations

import lightning as L
import torch


class PoisonWeights(L.Callback):
    """Fills the module's first parameter with ``value`` (NaN) before training step ``at_step``."""

    def __init__(self, at_step: int = 2, value: float = float("nan")) -> None:
        self.at_step, self.value = at_step, value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(self.value)
