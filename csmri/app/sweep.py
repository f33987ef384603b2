"""Sweep summary: after a Hydra multirun, one table of overrides -> final metrics of every job.

Registered as a Hydra callback (``conf/hydra/default.yaml``), so ``csmri train -m ...`` writes
``sweep_summary.csv`` and ``sweep_summary.md`` into the sweep directory. Each job contributes its
swept overrides (``.hydra/overrides.yaml``) and the ``status``, ``best_score`` and ``final_metrics`` of its
``run_info.json``; rows are ranked by the best score.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from csmri.reporting import markdown_table
from csmri.run_info import read_run_info

log = logging.getLogger(__name__)


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (numbered subdirectories) of a sweep: job, status, the swept overrides (those that
    differ between jobs; constant ones are left out), the best monitored score and final ``val/`` metrics;
    ranked by the best score (per the run's monitor mode), jobs without one last."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    infos, overrides = [], []
    for job in jobs:
        overrides_path = job / ".hydra" / "overrides.yaml"
        infos.append(read_run_info(job))
        items = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
        overrides.append(dict(item.split("=", 1) if "=" in item else (item, "") for item in items or []))
    keys = sorted({k for o in overrides for k in o})
    swept = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    rows = []
    for job, info, values in zip(jobs, infos, overrides, strict=True):
        rows.append(
            {
                "job": job.name,
                "status": info.get("status", "missing"),
                **{k: values.get(k, "") for k in swept},
                "best_score": info.get("best_score"),
                **{k: v for k, v in info.get("final_metrics", {}).items() if k.startswith("val/")},
            }
        )
    maximise = any(str(i.get("monitor_mode", "")) == "max" for i in infos) or any(
        str(i.get("monitor", "")).endswith(("psnr", "ssim", "dice", "sis")) for i in infos
    )

    def rank(row: dict[str, Any]) -> tuple[bool, float]:
        score = row.get("best_score")
        if not isinstance(score, int | float):
            return True, 0.0
        return False, -score if maximise else score

    return sorted(rows, key=rank)


def write_summary(sweep_dir: Path) -> tuple[Path, Path]:
    """Write ``sweep_summary.csv`` and ``sweep_summary.md`` for the jobs under ``sweep_dir``."""
    rows = collect_jobs(sweep_dir)
    columns = list(dict.fromkeys(k for r in rows for k in r if not k.startswith("val/")))
    columns += sorted({k for r in rows for k in r if k.startswith("val/")})
    csv_path, md_path = sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_summary.md"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    cells = [[f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns] for r in rows]
    md_path.write_text(f"# Sweep {sweep_dir}\n\n" + markdown_table(columns, cells) + "\n")
    return csv_path, md_path


class SweepSummary(Callback):
    """Hydra callback writing the sweep summary when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            csv_path, md_path = write_summary(sweep_dir)
            log.info("sweep summary: %s, %s", csv_path, md_path)
