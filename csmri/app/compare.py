"""`csmri compare RUN_DIR... [--metric val/psnr] [--out compare.png]`: runs side by side without W&B.

Prints a table of each run's status (with the error of a failed run, the signal of an interrupted one), experiment,
best monitored score, the checkpoints it was resumed from (a chain of resumed runs, newest first) and final metrics
(from ``run_info.json``) and plots
one metric over training steps for every run (from the CSV logger's ``csv/metrics.csv``).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from csmri.reporting import save_figure
from csmri.run_info import resume_chain


def read_run(run_dir: Path) -> dict:
    info_path = run_dir / "run_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a csmri run directory (no run_info.json)")
    return json.loads(info_path.read_text())


def run_status(info: dict) -> str:
    """``finished`` / ``interrupted (SIGTERM)`` / ``failed: <error>``; a run still marked running whose process is gone
    cannot be told from a live one here, so it is shown as ``running?``."""
    status = str(info.get("status", "unknown"))
    if status == "failed" and info.get("error"):
        return f"failed: {info['error']}"
    if status == "interrupted" and info.get("error"):
        return f"interrupted ({info['error']})"
    return "running?" if status == "running" else status


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it is below it, else as recorded."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def resumed_from(info: dict) -> str:
    """The checkpoints the run was resumed from, newest first: ``b/checkpoints/last.ckpt <- a/checkpoints/last.ckpt``
    (the run that wrote each one was resumed from the next); empty for a run started afresh."""
    return " <- ".join(_shown(str(record.get("checkpoint", "?"))) for record in resume_chain(info))


def best_score(info: dict) -> str:
    """``<monitor> <score>`` of the run's best checkpoint, or empty."""
    score = info.get("best_score")
    return f"{info.get('monitor', '')} {score:.4f}".strip() if isinstance(score, int | float) else ""


def _logged(run_dir: Path, metric: str) -> Iterator[tuple[int, int, float]]:
    """``(epoch, step, value)`` of every row of the run's CSV log that logged ``metric`` (none when absent)."""
    path = run_dir / "csv" / "metrics.csv"
    if path.is_file():
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(metric):
                    yield int(row["epoch"]), int(row["step"]), float(row[metric])


def metric_curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of ``metric`` in the run's CSV log (empty when absent)."""
    logged = list(_logged(run_dir, metric))
    return [step for _, step, _ in logged], [value for *_, value in logged]


def metric_by_epoch(run_dir: Path, metric: str) -> dict[int, float]:
    """Epoch (Lightning's, 0 = the first, as checkpoints count) -> the last value of ``metric`` logged in it, from the
    run's CSV log (empty when absent)."""
    return dict(sorted({epoch: value for epoch, _, value in _logged(run_dir, metric)}.items()))


def mean_by_epoch(run_dir: Path, metric: str) -> dict[int, float]:
    """Epoch -> the mean of every value of ``metric`` logged in it (e.g. a training loss logged every N steps), from the
    run's CSV log (empty when absent)."""
    values: dict[int, list[float]] = {}
    for epoch, _, value in _logged(run_dir, metric):
        values.setdefault(epoch, []).append(value)
    return {epoch: sum(v) / len(v) for epoch, v in sorted(values.items())}


def compare(run_dirs: list[Path], metric: str, out: Path) -> Path:
    runs = {d: read_run(d) for d in run_dirs}
    names = sorted({k for info in runs.values() for k in info.get("final_metrics", {}) if k.startswith("val/")})
    chains = {d: resumed_from(info) for d, info in runs.items()}
    resumed = ["resumed from"] if any(chains.values()) else []
    table = Table(title="csmri runs")
    for column in ("run", "experiment", "status", "best score", *resumed, *names):
        table.add_column(column, overflow="fold")
    for d, info in runs.items():
        finals = info.get("final_metrics", {})
        cells = [f"{finals[n]:.4f}" if n in finals else "" for n in names]
        chain = [chains[d]] if resumed else []
        table.add_row(str(d), str(info.get("experiment", "")), run_status(info), best_score(info), *chain, *cells)
    Console(width=max(Console().width, 200)).print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for d in run_dirs:
        steps, values = metric_curve(d, metric)
        if steps:
            ax.plot(steps, values, marker="o", markersize=3, label=d.name)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csmri compare", description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--metric", default="val/psnr", help="metric to plot over steps")
    parser.add_argument("--out", type=Path, default=Path("compare.png"), help="plot file")
    args = parser.parse_args(argv)
    try:
        path = compare(args.runs, args.metric, args.out)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(f"wrote {path}")
    return 0
