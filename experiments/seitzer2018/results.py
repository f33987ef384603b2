"""``results/`` of the paper's pipeline: the evaluation's table and figure, the training curves, and a README that
states the setting, the table, the paper's targets checked on it and how training went."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from csmri.app.curves import training_figure
from csmri.reporting import duration
from csmri.run_info import git_state, perceptual_precision_label, read_run_info
from experiments.seitzer2018.targets import Check, check_targets, targets_markdown

console = Console()
RESULT_FILES = ("table.md", "table.json", "per_slice.csv", "figure.png")


def training_runs(runner: Any) -> dict[str, tuple[str, Path]]:
    """Every training run of the pipeline: name -> (experiment, folder)."""
    return {n: (str(r.experiment), r.run_dir) for n, r in runner.runs.items() if r.command == "train"}


def runs_of_experiment(runner: Any, experiment: str) -> list[str]:
    """The training runs of ``experiment`` (e.g. ``segnet``: the nets SIS uses), in order."""
    return [n for n, r in runner.runs.items() if r.command == "train" and r.experiment == experiment]


def print_checks(checks: Sequence[Check], out: Console) -> None:
    """One line per target, its status coloured; the texts are printed literally (``[0.75, 0.85]`` or
    ``[zero-filled + 1 dB, ...]`` are not rich markup)."""
    for check in checks:
        colour = {"met": "green", "not met": "red"}.get(check.status, "yellow")
        out.print(
            f"  {check.kind}: {escape(check.target)}: {escape(check.measured)} → [{colour}]{check.status}[/{colour}]"
        )


def collect(runner: Any, elapsed_s: float) -> Path:
    """Copy the evaluation's outputs to ``results`` and write its README."""
    results = runner.results
    results.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        shutil.copy2(runner.stage_dir("eval") / name, results / name)
    checks = check_targets(json.loads((results / "table.json").read_text())["rows"])
    (results / "curves.png").unlink(missing_ok=True)  # a previous run's, if this one logged no curve
    training = training_figure(training_runs(runner), results / "curves.png")
    (results / "README.md").write_text(readme(runner, elapsed_s, checks, training[1] if training else []))
    print_checks(checks, console)
    console.print(f"[bold green]results in {results}/[/bold green]")
    return results


def _backbone_used(runner: Any, name: str) -> str:
    """Run ``name``'s perceptual backbone as it recorded it, with the precision its VGG ran in."""
    info = read_run_info(runner.stage_dir(name)) if name in runner.runs else {}
    label = perceptual_precision_label(info.get("perceptual_precision"))
    return f"{info.get('perceptual_backbone', 'n/a')}{f' ({label})' if label else ''}"


def readme(runner: Any, elapsed_s: float, checks: Sequence[Check], training: Sequence[str] = ()) -> str:
    """``results/README.md``: the setting, the table and figure, the targets' checks and, where the stages logged
    curves (``training``: their sentences, ``curves.png`` beside it), how training went."""
    cfg, results, data_root = runner.cfg, runner.results, runner.data_root
    meta = json.loads((data_root / "meta.json").read_text()) if (data_root / "meta.json").is_file() else {}
    splits = {k: len(v) for k, v in meta.get("splits", {}).items()}
    backbones = {s: _backbone_used(runner, s) for s in ("stage2", "dagan")}
    names = [n for n, r in runner.runs.items() if r.command == "train"]
    stage_times = {s: read_run_info(runner.stage_dir(s)).get("elapsed_s") for s in (*names, "eval")}
    segnets = runs_of_experiment(runner, "segnet")
    lines = [
        f"# csmri reproduce — profile `{cfg.name}`",
        "",
        f"{cfg.description}.",
        "",
        "## Setting",
        f"- data: `{data_root}` ({meta.get('source', 'unknown')} source, size {meta.get('size')}, "
        f"patients per split {splits}), {cfg.data.acceleration}x Cartesian undersampling",
        f"- seed: {cfg.seed}; validation/test masks fixed per slice from (data.eval_seed, slice key),"
        " the same for every training seed",
        f"- SIS: segmentation net(s) of stage(s) {', '.join(segnets)}"
        + (" (an ensemble: the argmax of their mean class probabilities)" if len(segnets) > 1 else ""),
        f"- perceptual backbone actually used: stage 2 `{backbones['stage2']}`, DAGAN `{backbones['dagan']}`"
        + (
            " — offline stand-ins (`-random`: seeded random weights; `-file:vgg19_autoencoder.pth`: VGG-19"
            " trained as an autoencoder of the training images): perceptual results are not comparable to"
            " ImageNet-VGG ones"
            if any("imagenet" not in str(b) for b in backbones.values())
            else ""
        ),
        f"- code: commit `{git_state()['commit']}`",
        f"- time: {duration(elapsed_s)} for this invocation; per step (s): {stage_times}",
        f"- runs: `{runner.work}/<stage>/` (configs, checkpoints, logs); evaluation: `{runner.work}/eval/`",
        "",
        "## Table 1",
        "",
        (results / "table.md").read_text(),
        "",
        "![Figure 2](figure.png)",
        "",
        "## The paper's regime and claims, on this table",
        "",
        "Calibration: is the embedded study in the paper's regime? Claims: does the paper's effect appear?",
        "(`experiments/seitzer2018/targets.py`; a status is measured on this split, never tuned on it.)",
        "",
        targets_markdown(checks),
        "",
    ]
    if training:
        lines += [
            "## Training, on the validation split",
            "",
            "![Training curves](curves.png)",
            "",
            *(f"- {sentence}" for sentence in training),
            "",
        ]
    return "\n".join(lines)
