"""metrics.csv survives a resume in the same folder (Lightning's CSVLogger deletes it)."""

from __future__ import annotations

import csv
from pathlib import Path

from csmri.lit.csv_logger import ResumableCSVLogger


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_resumed_run_appends_to_metrics_csv(tmp_path):
    first = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    first.log_metrics({"train/loss": 0.5}, step=0)
    first.log_metrics({"train/loss": 0.25}, step=1)
    first.save()
    path = tmp_path / "csv" / "metrics.csv"

    resumed = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")  # a new process, same folder
    resumed.log_metrics({"train/loss": 0.125}, step=2)
    resumed.log_metrics({"train/loss": 0.0625, "val/psnr": 30.0}, step=3)  # a metric first seen after the resume
    resumed.save()

    rows = _rows(path)
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"]
    assert [float(r["train/loss"]) for r in rows] == [0.5, 0.25, 0.125, 0.0625]
    assert [r["val/psnr"] for r in rows] == ["", "", "", "30.0"]


def test_every_run_logs_through_it_and_flushes_each_logging_step(tmp_path):
    from hydra.utils import instantiate

    from tests.helpers import compose_config

    cfg = compose_config("train", ["experiment=stage1", "logger=csv"], tmp_path)
    logger = instantiate(cfg.logger.csv)
    assert isinstance(logger, ResumableCSVLogger) and Path(logger.log_dir) == tmp_path / "csv"
    logger.log_metrics({"train/loss": 1.0}, step=0)
    assert len(_rows(tmp_path / "csv" / "metrics.csv")) == 1  # on disk at once, not after 100 steps
