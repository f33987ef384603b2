"""`csmri reproduce` / `make reproduce`: the paper's study as one resumable pipeline.

    csmri reproduce [profile=quick|paper|smoke] [data.root=DIR] [results=DIR] [work_dir=DIR] [seed=N] ...

Stages: phantom data -> stage 1 (RecNet) -> segmentation net(s) -> stage 2 (refinement) -> DAGAN ->
``csmri eval`` (zero-filled, RecNet, DAGAN, DLMRI, refinement) -> ``results/``. The training stages are the
profile's ``stages``, in order (``stage1``, ``stage2`` and ``dagan`` by name); every stage with
``experiment: segnet`` joins the segmentation ensemble that scores SIS. Each training stage is a
``csmri train`` run in ``<work_dir>/<stage>``; every stage with ``experiment: stage2`` is a training run of the
refinement (seeds), and the table reports the mean over them. A stage whose ``run_info.json`` says ``finished`` and
that has ``checkpoints/best.ckpt`` is skipped, an interrupted one resumes from its newest checkpoint
(``last.ckpt`` / ``on_exception.ckpt``); a stage folder whose run was started with other overrides than the
profile now gives it is an error (a changed setting needs its own ``work_dir``). The evaluation reruns when a
checkpoint is newer than its table. Profiles live in ``csmri/conf/reproduce/<name>.yaml``; any key can be
overridden as ``key=value``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from csmri.app.curves import training_figure
from csmri.config import compose, config_dir
from csmri.errors import ConfigError
from csmri.eval.targets import Check, check_targets, targets_markdown
from csmri.run_info import git_state, overrides_change, perceptual_precision_label, read_run_info

console = Console()
RESULT_FILES = ("table.md", "table.json", "per_slice.csv", "figure.png")
REQUIRED_STAGES = ("stage1", "segnet", "stage2", "dagan")


def load_profile(argv: list[str]) -> DictConfig:
    """The profile named by ``profile=NAME`` (default quick; ``csmri/conf/reproduce/<name>.yaml``) composed with the
    other ``key=value`` overrides (Hydra override grammar; a key that is not in the profile is an error)."""
    from hydra.errors import HydraException

    overrides = [a for a in argv if not a.startswith("profile=")]
    names = [a.split("=", 1)[1] for a in argv if a.startswith("profile=")]
    name = names[-1] if names else "quick"
    path = config_dir() / "reproduce" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise SystemExit(f"csmri reproduce: unknown profile {name!r}; choose one of {known}")
    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise SystemExit(f"csmri reproduce: expected key=value overrides, got {bad}")
    try:
        profile = compose(f"reproduce/{name}", overrides)
    except HydraException as err:  # a typo in a key, a malformed value
        raise SystemExit(f"csmri reproduce: bad override: {err}") from err
    OmegaConf.set_struct(profile, True)
    return profile


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple | ListConfig) else [value]


def _override_value(value: Any) -> str:
    """A number or a list as the right-hand side of a Hydra override (``0.5``, ``[0.5,1.0]``)."""
    if isinstance(value, list | tuple | ListConfig):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


SKIPPED = ("done", "unneeded")  # step states that run nothing


@dataclass
class Step:
    name: str
    estimate_s: float
    status: str = "todo"  # todo | resume | done | unneeded
    elapsed_s: float = 0.0


def _recorded_overrides(args: Sequence[str]) -> list[str]:
    """What a ``csmri train``/``eval`` run records of its arguments (``run_info.json`` ``overrides``): Hydra's task
    overrides, i.e. without the ``hydra.*`` ones (see :func:`csmri.run_info.job_overrides`)."""
    return [a for a in args if not a.startswith("hydra.")]


class Pipeline:
    """Runs the profile's steps in order, skipping finished ones; see the module docstring."""

    def __init__(self, profile: DictConfig) -> None:
        self.p = profile
        self.work = Path(profile.work_dir)
        self.results = Path(profile.results)
        data_dir = Path(os.environ.get("CSMRI_DATA_DIR", "data"))
        resolution = profile.data.get("resolution", 1.0)
        suffix = "" if resolution == 1 else "_res" + "-".join(f"{float(r):g}" for r in _as_list(resolution))
        default_root = data_dir / f"phantom_{profile.data.size}{suffix}"
        self.data_root = Path(profile.data.root) if profile.data.root else default_root
        missing = [name for name in REQUIRED_STAGES if name not in profile.stages]
        if missing:
            raise SystemExit(f"csmri reproduce: the profile has no stages {missing} (needs {list(REQUIRED_STAGES)})")
        self.train_stages = list(profile.stages)
        self.steps = [Step(name, 60 * profile.stages[name].estimate_min) for name in self.train_stages]
        self.steps.append(Step("eval", 60 * profile.eval.estimate_min))

    # -- artefacts ------------------------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        return self.work / name

    def best_ckpt(self, name: str) -> Path:
        return self.stage_dir(name) / "checkpoints" / "best.ckpt"

    def eval_ckpt(self, name: str) -> Path:
        """The checkpoint a stage contributes downstream: ``best`` (by its monitored metric) or ``last``
        (the profile's ``stages.<name>.checkpoint``; the GAN stages use the end of training, since
        selecting them by val PSNR would favour the least refined weights)."""
        which = self.p.stages[name].get("checkpoint", "best")
        return self.stage_dir(name) / "checkpoints" / f"{which}.ckpt"

    def _run_info(self, name: str) -> dict[str, Any]:
        return read_run_info(self.stage_dir(name))

    @staticmethod
    def _finished(run_dir: Path) -> bool:
        finished = read_run_info(run_dir).get("status") == "finished"
        return finished and (run_dir / "checkpoints" / "best.ckpt").is_file()

    @staticmethod
    def _resume_ckpt(run_dir: Path) -> Path | None:
        """The newest of ``last.ckpt`` / ``on_exception.ckpt`` under ``run_dir/checkpoints``, if any."""
        candidates = [run_dir / "checkpoints" / f for f in ("last.ckpt", "on_exception.ckpt")]
        existing = [c for c in candidates if c.is_file()]
        return max(existing, key=lambda c: c.stat().st_mtime) if existing else None

    # -- the offline perceptual stand-in ---------------------------------------------------------------
    def autoencoder_stage(self) -> str | None:
        """The stage that trains the offline perceptual backbone (``experiment: vgg_autoencoder``), if any."""
        names = [n for n in self.train_stages if self.p.stages[n].experiment == "vgg_autoencoder"]
        return names[0] if names else None

    def autoencoder_weights(self, run_dir: Path | None = None) -> Path | None:
        """The VGG-19 file an autoencoder run exports into ``run_dir`` (default: the profile's autoencoder stage; None
        if it has none)."""
        from csmri.lit.perceptual import AUTOENCODER_WEIGHTS  # here, not at start-up: it imports torch and Lightning

        stage = self.autoencoder_stage()
        run_dir = run_dir or (self.stage_dir(stage) if stage else None)
        return run_dir / AUTOENCODER_WEIGHTS if run_dir else None

    def uses_autoencoder(self) -> bool:
        """Stage 2's perceptual loss uses the profile's autoencoder VGG-19: the profile trains one, allows a stand-in
        (``vgg_standin``) and the ImageNet VGG-19 file is absent (ImageNet weights stay the default when present)."""
        from csmri.models.vgg import imagenet_weights_file

        return (
            self.autoencoder_stage() is not None
            and bool(self.p.get("vgg_standin", True))
            and not imagenet_weights_file("vgg19").is_file()
        )

    def status(self, name: str) -> str:
        if name == self.autoencoder_stage() and not self.uses_autoencoder():
            return "unneeded"  # stage 2 uses the ImageNet VGG-19 weights (present, or required: vgg_standin=false)
        if name == "eval":
            table = self.stage_dir("eval") / "table.json"
            newest = max(
                (self.eval_ckpt(s).stat().st_mtime for s in self.train_stages if self.eval_ckpt(s).is_file()), default=0
            )
            info = self._run_info("eval")
            now = _recorded_overrides(self.eval_args())
            done = (
                table.is_file()
                and info.get("status") == "finished"
                and table.stat().st_mtime > newest
                and overrides_change(info, now) is None  # e.g. eval.methods changed: evaluate again
            )
            return "done" if done else "todo"
        run_dir = self.stage_dir(name)
        finished, resume = self._finished(run_dir), self._resume_ckpt(run_dir)
        if finished or resume:
            self._check_same_settings(name)
        if finished:
            return "done"
        return "resume" if resume else "todo"

    def _check_same_settings(self, name: str) -> None:
        """A stage's folder must hold a run of this profile's command for it: one trained with other overrides
        (the profile's ``stages.<name>.overrides`` or ``train_overrides`` changed, an input such as stage 1's
        checkpoint or the perceptual weights changed) is an error, never reused or resumed under the new name."""
        stage = self.p.stages[name]
        args = self.training_args(stage.experiment, self.stage_dir(name), self._stage_overrides(name))
        change = overrides_change(self._run_info(name), _recorded_overrides(args))
        if change:
            raise ConfigError(
                f"stage {name}: {self.stage_dir(name)} holds a run with other overrides ({change})",
                "give this setting its own work_dir=DIR (and results=DIR), or remove that folder to train the "
                "stage again",
            )

    # -- commands -------------------------------------------------------------------------------------
    def data_overrides(self) -> list[str]:
        d = self.p.data
        return [
            f"data={d.config}",
            f"data.root={self.data_root}",
            f"data.acceleration={d.acceleration}",
            f"data.sample_n={d.sample_n if d.get('sample_n') is not None else 'null'}",
            f"seed={self.p.seed}",
            # the phantom's settings for every step (training and eval): a phantom is checked against them
            *(
                [
                    f"data.source.size={d.size}",
                    f"data.source.patients={d.patients}",
                    f"data.source.slices={d.slices}",
                    *([f"data.source.resolution={_override_value(d.resolution)}"] if "resolution" in d else []),
                ]
                if d.config == "phantom"
                else []
            ),
        ]

    def segnet_stages(self) -> list[str]:
        """The stages that train a segmentation net (``experiment: segnet``): SIS uses all of them."""
        return [name for name in self.train_stages if self.p.stages[name].experiment == "segnet"]

    def refinement_stages(self) -> list[str]:
        """The stages that train the refinement (``experiment: stage2``; ``stage2`` first): the table's refinement row
        is each slice's metrics averaged over all of them (several seeds: one run's end point is not a measurement,
        README round 6)."""
        return [name for name in self.train_stages if self.p.stages[name].experiment == "stage2"]

    def segnet_override(self) -> str:
        """``segnet.ckpt=...`` for ``csmri eval``: one checkpoint, or the list of an ensemble."""
        ckpts = [str(self.eval_ckpt(name)) for name in self.segnet_stages()]
        return f"segnet.ckpt={ckpts[0]}" if len(ckpts) == 1 else f"segnet.ckpt=[{','.join(ckpts)}]"

    def refinement_override(self) -> str:
        """``refinement.ckpt=...`` for ``csmri eval``: one checkpoint, or the list of the refinement's training runs."""
        ckpts = [str(self.eval_ckpt(name)) for name in self.refinement_stages()]
        return f"refinement.ckpt={ckpts[0]}" if len(ckpts) == 1 else f"refinement.ckpt=[{','.join(ckpts)}]"

    def training_command(self, experiment: str, run_dir: Path, overrides: Sequence[str] = ()) -> list[str]:
        """``csmri train experiment=<experiment>`` on the profile's data into ``run_dir``, then ``overrides``
        (later ones win), resumed from the run's newest checkpoint unless it has finished. Every training command
        of reproduce and the study is built here."""
        args = self.training_args(experiment, run_dir, overrides)
        resume = None if self._finished(run_dir) else self._resume_ckpt(run_dir)
        if resume is not None:
            args.append(f"ckpt_path={resume}")
        return [sys.executable, "-m", "csmri", "train", *args]

    def training_args(self, experiment: str, run_dir: Path, overrides: Sequence[str] = ()) -> list[str]:
        """The arguments of :meth:`training_command`, without its resume point."""
        return [f"experiment={experiment}", *self.data_overrides(), f"hydra.run.dir={run_dir}", *overrides]

    def train_command(self, name: str) -> list[str]:
        """The command of the profile's stage ``name`` (see :meth:`_stage_overrides`)."""
        stage = self.p.stages[name]
        return self.training_command(stage.experiment, self.stage_dir(name), self._stage_overrides(name))

    def _stage_overrides(self, name: str) -> list[str]:
        """Stage ``name``'s overrides: its inputs from earlier stages, then the profile's ``train_overrides``, then
        the stage's own ``overrides``."""
        stage = self.p.stages[name]
        inputs = []
        if stage.experiment == "stage2":
            inputs.append(f"model.recon_ckpt={self.eval_ckpt('stage1')}")
        if stage.experiment in ("stage2", "dagan") and not self.p.get("vgg_standin", True):
            inputs.append("model.perceptual.allow_random_fallback=false")
        if stage.experiment == "stage2" and self.uses_autoencoder():
            inputs.append(f"model.perceptual.weights={self.autoencoder_weights()}")
        return [*inputs, *self.p.train_overrides, *stage.overrides]

    def eval_command(self) -> list[str]:
        return [sys.executable, "-m", "csmri", "eval", *self.eval_args()]

    def eval_args(self) -> list[str]:
        """The arguments of :meth:`eval_command`."""
        e = self.p.eval
        return [
            *self.data_overrides(),
            f"hydra.run.dir={self.stage_dir('eval')}",
            f"methods=[{','.join(e.methods)}]",
            self.segnet_override(),
            f"recnet.ckpt={self.eval_ckpt('stage1')}",
            self.refinement_override(),
            f"dagan.ckpt={self.eval_ckpt('dagan')}",
            *e.overrides,
        ]

    # -- running --------------------------------------------------------------------------------------
    def print_plan(self) -> None:
        table = Table(title=f"csmri reproduce — profile {self.p.name}: {self.p.description}")
        for column in ("step", "status", "estimate"):
            table.add_column(column)
        for step in self.steps:
            step.status = self.status(step.name)
            table.add_row(step.name, step.status, "-" if step.status in SKIPPED else _minutes(step.estimate_s))
        console.print(table)
        todo = sum(s.estimate_s for s in self.steps if s.status not in SKIPPED)
        console.print(f"data: {self.data_root} | work dir: {self.work} | results: {self.results}")
        console.print(f"[bold]estimated time: {_minutes(todo)}[/bold] (estimates measured on 2 CPU cores)")

    def eta(self, done: list[Step]) -> str:
        """Remaining time: the remaining estimates scaled by how fast the finished steps went."""
        spent = sum(s.elapsed_s for s in done)
        estimated = sum(s.estimate_s for s in done) or 1.0
        remaining = sum(s.estimate_s for s in self.steps if s.status not in SKIPPED and s not in done)
        return _minutes(remaining * (spent / estimated if spent else 1.0))

    def check_perceptual_weights(self) -> None:
        """With ``vgg_standin: false`` (the paper profile) refuse to start without the ImageNet VGG files the
        perceptual losses need: a random-weight stand-in would silently change what the table measures."""
        if self.p.get("vgg_standin", True):
            return
        from csmri.models.vgg import imagenet_weights_file

        missing = [
            imagenet_weights_file(arch) for arch in ("vgg19", "vgg16") if not imagenet_weights_file(arch).is_file()
        ]
        if missing:
            raise SystemExit(
                f"csmri reproduce profile={self.p.name}: the ImageNet VGG weights are missing: "
                + ", ".join(str(m) for m in missing)
                + ". Put the torchvision files there (they download there once with internet, or copy them from a "
                "machine that has them), or accept a random-weight stand-in explicitly with vgg_standin=true "
                "(recorded in results/README.md)."
            )

    def run(self) -> Path:
        start = time.time()
        self.check_perceptual_weights()
        self.print_plan()
        self.data_root.parent.mkdir(parents=True, exist_ok=True)
        ran: list[Step] = []
        for i, step in enumerate(self.steps, 1):
            if step.status == "done":
                console.print(f"[green]✓ {step.name}: finished earlier, skipped[/green]")
                continue
            if step.status == "unneeded":
                console.print(
                    f"[green]✓ {step.name}: not needed (stage 2 uses the ImageNet VGG-19 weights), skipped[/green]"
                )
                continue
            command = self.eval_command() if step.name == "eval" else self.train_command(step.name)
            console.rule(f"[{i}/{len(self.steps)}] {step.name} ({step.status}) — ETA of the pipeline {self.eta(ran)}")
            console.print(" ".join(command[2:]), style="dim", markup=False)  # overrides hold [lists]
            t0 = time.time()
            result = subprocess.run(command)
            step.elapsed_s = time.time() - t0
            if result.returncode != 0:
                raise SystemExit(
                    f"csmri reproduce: step {step.name} failed (exit {result.returncode}); rerun to resume"
                )
            step.status = "done"
            ran.append(step)
            console.print(f"[green]✓ {step.name} in {_minutes(step.elapsed_s)}[/green]")
        return self.collect(time.time() - start)

    def collect(self, elapsed_s: float) -> Path:
        """Copy the evaluation's outputs to ``results`` and write its README."""
        self.results.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:
            shutil.copy2(self.stage_dir("eval") / name, self.results / name)
        checks = check_targets(json.loads((self.results / "table.json").read_text())["rows"])
        stages = {name: (self.p.stages[name].experiment, self.stage_dir(name)) for name in self.train_stages}
        (self.results / "curves.png").unlink(missing_ok=True)  # a previous run's, if this one logged no curve
        training = training_figure(stages, self.results / "curves.png")
        (self.results / "README.md").write_text(self.readme(elapsed_s, checks, training[1] if training else []))
        for check in checks:
            colour = {"met": "green", "not met": "red"}.get(check.status, "yellow")
            console.print(f"  {check.kind}: {check.target}: {check.measured} → [{colour}]{check.status}[/{colour}]")
        console.print(f"[bold green]results in {self.results}/[/bold green]")
        return self.results

    def _backbone_used(self, stage: str) -> str:
        """``stage``'s perceptual backbone as its run recorded it, with the precision its VGG ran in."""
        info = self._run_info(stage)
        label = perceptual_precision_label(info.get("perceptual_precision"))
        return f"{info.get('perceptual_backbone', 'n/a')}{f' ({label})' if label else ''}"

    def readme(self, elapsed_s: float, checks: Sequence[Check], training: Sequence[str] = ()) -> str:
        """``results/README.md``: the setting, the table and figure, the targets' checks and, where the stages
        logged curves (``training``: their sentences, ``curves.png`` beside it), how training went."""
        meta = (
            json.loads((self.data_root / "meta.json").read_text()) if (self.data_root / "meta.json").is_file() else {}
        )
        splits = {k: len(v) for k, v in meta.get("splits", {}).items()}
        backbones = {s: self._backbone_used(s) for s in ("stage2", "dagan")}
        stage_times = {s: self._run_info(s).get("elapsed_s") for s in (*self.train_stages, "eval")}
        lines = [
            f"# csmri reproduce — profile `{self.p.name}`",
            "",
            f"{self.p.description}.",
            "",
            "## Setting",
            f"- data: `{self.data_root}` ({meta.get('source', 'unknown')} source, size {meta.get('size')}, "
            f"patients per split {splits}), {self.p.data.acceleration}x Cartesian undersampling",
            f"- seed: {self.p.seed}; validation/test masks fixed per slice from (data.eval_seed, slice key),"
            " the same for every training seed",
            f"- SIS: segmentation net(s) of stage(s) {', '.join(self.segnet_stages())}"
            + (" (an ensemble: the argmax of their mean class probabilities)" if len(self.segnet_stages()) > 1 else ""),
            f"- perceptual backbone actually used: stage 2 `{backbones['stage2']}`, DAGAN `{backbones['dagan']}`"
            + (
                " — offline stand-ins (`-random`: seeded random weights; `-file:vgg19_autoencoder.pth`: VGG-19"
                " trained as an autoencoder of the training images): perceptual results are not comparable to"
                " ImageNet-VGG ones"
                if any("imagenet" not in str(b) for b in backbones.values())
                else ""
            ),
            f"- code: commit `{git_state()['commit']}`",
            f"- time: {_minutes(elapsed_s)} for this invocation; per step (s): {stage_times}",
            f"- runs: `{self.work}/<stage>/` (configs, checkpoints, logs); evaluation: `{self.work}/eval/`",
            "",
            "## Table 1",
            "",
            (self.results / "table.md").read_text(),
            "",
            "![Figure 2](figure.png)",
            "",
            "## The paper's regime and claims, on this table",
            "",
            "Calibration: is the embedded study in the paper's regime? Claims: does the paper's effect appear?",
            "(`csmri.eval.targets`; a status is measured on this split, never tuned on it.)",
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


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    Pipeline(load_profile(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
