"""The reproduce run's training, epoch by epoch on the validation split: ``curves.png`` and what it shows in words.

Read from each stage's CSV log (``csv/metrics.csv``); a stage without one (another logger) is left out. Three
panels, one per question the results README asks of training: has stage 1 converged (validation PSNR against the
zero-filled input), where does stage 2 go from R (validation PSNR against R's, and the gate λ), and which epoch of
DAGAN its protocol selects (validation NMSE, lowest marked). Epochs count from 0, as checkpoints (and the table's
footnote) do. Nothing here is chosen: it reports the runs.
"""

from __future__ import annotations

from pathlib import Path

from csmri.app.compare import metric_by_epoch
from csmri.reporting import save_figure

CURVED_EXPERIMENTS = ("stage1", "stage2", "dagan")  # experiments with a panel, in panel order


def stage_curves(experiment: str, run_dir: Path) -> dict[str, dict[int, float]]:
    """The validation curves of one stage's run, by its experiment: ``psnr`` and its reference (``zero_filled`` for
    stage 1, ``recon`` — R's PSNR on the same slices — and ``lambda`` for stage 2), ``nmse`` for DAGAN."""
    metrics = {
        "stage1": {"psnr": "val/psnr", "zero_filled": "val/psnr_zero_filled"},
        "stage2": {"psnr": "val/psnr", "recon": "val/psnr_recon", "lambda": "train/lambda"},
        "dagan": {"nmse": "val/nmse"},
    }[experiment]
    return {name: metric_by_epoch(run_dir, metric) for name, metric in metrics.items()}


def _last(series: dict[int, float]) -> tuple[int, float]:
    epoch = max(series)
    return epoch, series[epoch]


def _listed(series: dict[int, float], digits: int, signed: bool = False) -> str:
    return ", ".join(f"{v:{'+' if signed else ''}.{digits}f}" for v in series.values())


def r_lines(runs: list[tuple[str, dict[str, dict[int, float]]]]) -> list[tuple[str, float, int | None]]:
    """Stage 2's reference lines: R's last validation PSNR as ``(label, value, run index or None)``. One line ``R``
    when every run saw the same value (validation masks from ``data.eval_seed``, the same for every seed), else one
    per run (runs validated on different masks: before ``data.eval_seed``, or with it set per run)."""
    values = [(k, name, _last(curves["recon"])[1]) for k, (name, curves) in enumerate(runs) if curves["recon"]]
    if not values:
        return []
    if len({round(v, 9) for _, _, v in values}) == 1:
        return [("R", values[0][2], None)]
    return [(f"R ({name}'s masks)", v, k) for k, name, v in values]


def describe(experiment: str, curves: dict[str, dict[int, float]], run: str | None = None) -> str | None:
    """One sentence on a stage's curves (``None`` without them); ``run`` names the run when an experiment has several
    (the refinement's seeds)."""
    named = f" ({run})" if run else ""
    if experiment == "stage1" and curves["psnr"]:
        psnr = curves["psnr"]
        final, last = _last(psnr)
        tail = max(1, len(psnr) // 4)
        before = psnr.get(final - tail, next(iter(psnr.values())))
        zero_filled = f" (zero-filled {_last(curves['zero_filled'])[1]:.2f} dB)" if curves["zero_filled"] else ""
        return (
            f"stage 1{named}: validation PSNR {next(iter(psnr.values())):.2f} → {last:.2f} dB in {len(psnr)} epochs"
            f"{zero_filled}; its last {tail} epoch(s) added {last - before:+.2f} dB"
        )
    if experiment == "stage2" and curves["psnr"]:
        recon = f" against R's {_last(curves['recon'])[1]:.2f} dB" if curves["recon"] else ""
        lam = curves["lambda"]
        gate = f"; λ as last logged in each epoch {_listed(lam, 3, signed=True)}" if lam else ""
        return f"stage 2{named}: validation PSNR per epoch {_listed(curves['psnr'], 2)}{recon}{gate}"
    if experiment == "dagan" and curves["nmse"]:
        best = min(curves["nmse"], key=curves["nmse"].get)
        return f"DAGAN{named}: validation NMSE per epoch {_listed(curves['nmse'], 4)}; lowest at epoch {best}"
    return None


def training_figure(stages: dict[str, tuple[str, Path]], path: Path) -> tuple[Path, list[str]] | None:
    """``curves.png`` of the stages ``name -> (experiment, run_dir)`` with a panel (:data:`CURVED_EXPERIMENTS`; the
    runs of one experiment, e.g. the refinement's seeds, share its panel) and their sentences; ``None`` if none of them
    logged a curve."""
    logged: dict[str, list[tuple[str, dict[str, dict[int, float]]]]] = {}
    for name, (experiment, run_dir) in stages.items():
        if experiment in CURVED_EXPERIMENTS:
            curves = stage_curves(experiment, run_dir)
            if describe(experiment, curves):
                logged.setdefault(experiment, []).append((name, curves))
    if not logged:
        return None
    panels = sorted(logged.items(), key=lambda panel: CURVED_EXPERIMENTS.index(panel[0]))
    sentences = [
        describe(experiment, curves, name if len(runs) > 1 else None)
        for experiment, runs in panels
        for name, curves in runs
    ]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (experiment, runs) in zip(axes[0], panels, strict=True):
        main = "nmse" if experiment == "dagan" else "psnr"
        gate = ax.twinx() if experiment == "stage2" and any(curves["lambda"] for _, curves in runs) else None
        colours = []
        for k, (name, curves) in enumerate(runs):
            series = curves[main]
            line = ax.plot(list(series), list(series.values()), marker="o", markersize=3, label=name)[0]
            colours.append(line.get_color())
            if gate is not None and curves["lambda"]:
                lam = curves["lambda"]
                gate.plot(list(lam), list(lam.values()), c=line.get_color(), ls=":", marker="s", markersize=3)
            if experiment == "dagan":
                best = min(series, key=series.get)
                ax.scatter(
                    [best],
                    [series[best]],
                    s=90,
                    facecolors="none",
                    edgecolors="black",
                    label="lowest" if k == 0 else None,
                )
        if experiment == "stage2":
            for label, value, k in r_lines(runs):
                ax.axhline(value, ls="--", c="grey" if k is None else colours[k], lw=1, label=label)
        first = runs[0][1]
        if experiment == "stage1" and first["zero_filled"]:
            ax.axhline(_last(first["zero_filled"])[1], ls="--", c="grey", label="zero-filled")
        if gate is not None:
            gate.set_ylabel("λ (last logged in the epoch; dotted)")
            ax.set_zorder(gate.get_zorder() + 1)  # the PSNR axes (and their legend) above the λ axes
            ax.patch.set_visible(False)
        ax.set_xlabel("epoch (0 = the first)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation NMSE" if main == "nmse" else "validation PSNR (dB)")
        ax.set_title(", ".join(name for name, _ in runs), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Training, on the validation split")
    return save_figure(fig, path, dpi=110), [s for s in sentences if s]
