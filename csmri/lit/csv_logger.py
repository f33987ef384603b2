"""A CSV logger whose ``metrics.csv`` survives a resume.

Lightning's :class:`~lightning.pytorch.loggers.CSVLogger` deletes an existing ``metrics.csv`` when a writer opens its
folder, so resuming a run in place (``ckpt_path=...``, ``csmri reproduce`` after a crash) threw away every metric
logged before the interruption. Here the writer keeps the file, adopts its header and appends; a metric first seen
after the resume widens the header without losing rows (Lightning's own rewrite). Rows logged after the last
checkpoint and before a crash stay in the file, so after a resume a step may appear twice: the ``epoch``/``step``
columns tell them apart.
"""

from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Adopt the header of an existing ``metrics.csv`` instead of deleting the file."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(next(csv.reader(file), []))


class ResumableCSVLogger(CSVLogger):
    """:class:`~lightning.pytorch.loggers.CSVLogger` that appends to the ``metrics.csv`` it finds (same arguments)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
