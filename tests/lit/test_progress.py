"""EpochProgressLog (csmri/lit/progress.py): one plain line per epoch where the progress bar cannot draw."""

from __future__ import annotations

import logging
import re

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from csmri.lit.progress import EpochProgressLog


class _Logged(BoringModel):
    def validation_step(self, batch, batch_idx):
        loss = super().validation_step(batch, batch_idx)["x"]
        self.log("val/loss", loss)
        self.log("val/psnr", 20.0 + self.current_epoch)


def _fit(callback: EpochProgressLog, epochs: int) -> None:
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Logged())


def test_one_line_per_epoch_after_its_validation(caplog):
    caplog.set_level(logging.INFO, logger="csmri.lit.progress")
    _fit(EpochProgressLog(when="always", metrics=("val/psnr", "train/loss", "val/loss")), epochs=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "csmri.lit.progress"]
    assert len(lines) == 3  # not for the sanity check's validation
    for epoch, line in enumerate(lines, start=1):
        # the epoch's own validation (val/psnr = 20 + its 0-based index), then the time left: epochs after this one
        pattern = rf"epoch {epoch}/3 · [\d.]+ s/epoch · about \d+ s left · val/psnr {20 + epoch - 1}\.00 · val/loss "
        assert re.match(pattern, line), line
        assert "train/loss" not in line  # BoringModel logs no train/loss: absent metrics are left out
    assert "about 0 s left" in lines[-1]


def test_auto_follows_the_terminal_and_never_is_silent(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="csmri.lit.progress")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    _fit(EpochProgressLog(when="auto"), epochs=1)  # a terminal: the progress bar shows it
    _fit(EpochProgressLog(when="never"), epochs=1)
    assert not [r for r in caplog.records if r.name == "csmri.lit.progress"]
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    _fit(EpochProgressLog(when="auto"), epochs=1)  # a log file: one line
    assert len([r for r in caplog.records if r.name == "csmri.lit.progress"]) == 1
    with pytest.raises(ValueError, match="when must be one of"):
        EpochProgressLog(when="sometimes")


def test_the_line_without_max_epochs_and_the_time_left():
    progress = EpochProgressLog(metrics=("val/loss",))
    assert progress.line(0, -1, {}) == "epoch 1"  # no epochs done yet: no timing
    progress._seconds = [30.0, 50.0]  # 40 s per epoch
    assert progress.line(4, 200, {"val/loss": 0.0123456}) == (
        "epoch 5/200 · 40.0 s/epoch · about 2.2 h left · val/loss 0.012346"
    )
    assert progress.line(197, 200, {}) == "epoch 198/200 · 40.0 s/epoch · about 80 s left"
    assert progress.line(180, 200, {}) == "epoch 181/200 · 40.0 s/epoch · about 13 min left"
