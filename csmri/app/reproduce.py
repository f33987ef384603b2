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
profile now gives it is an error (a changed setting needs its own ``work_dir``). Profiles live in
``csmri/conf/reproduce/<name>.yaml``; any key can be overridden as ``key=value``.

Stale stages: each step records the content identities of the inputs it consumed in ``<stage>/inputs.json``
(:mod:`csmri.pipeline_inputs`: SHA-256 of upstream checkpoints and perceptual weights files, a fingerprint of the
dataset). Stage 2 consumes stage 1's checkpoint, its perceptual weights (the autoencoder stage's VGG-19 file, or the
ImageNet file) and the data; DAGAN its VGG-16 weights file and the data; the other training stages the data; the
evaluation every checkpoint it is given and the data. A finished step (or an interrupted one) is ``stale`` when
an input's content differs from its record, or when a stage that produces one of its inputs runs again in this
invocation; contents are compared, never file times (a touched checkpoint changes nothing). A stale training
stage starts afresh: its old folder is moved to ``<stage>.stale-<n>`` (never resumed, never deleted) and one line
says why; a stale evaluation runs again in its folder. The status is checked again just before each step, so a
step downstream of one retrained in this invocation runs again exactly when that step's output changed. A run
without ``inputs.json`` (trained before csmri recorded inputs, or by hand) keeps the earlier rule, with a note:
a finished training stage is kept, the evaluation reruns when a checkpoint is newer than its table.
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
from subprocess import CompletedProcess
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from csmri.app.curves import training_figure
from csmri.config import compose, config_dir
from csmri.errors import ConfigError
from csmri.eval.targets import Check, check_targets, targets_markdown
from csmri.pipeline_inputs import Input, changes, identities, read_record, write_record
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
RUNS = ("todo", "resume", "stale")  # step states that run something
PERCEPTUAL_ARCH = {"stage2": "vgg19", "joint": "vgg19", "dagan": "vgg16"}  # experiments with a perceptual loss


@dataclass
class Step:
    name: str
    estimate_s: float
    status: str = "todo"  # todo | resume | stale | done | unneeded
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
        """``todo`` (nothing to keep), ``resume`` (interrupted, inputs unchanged), ``stale`` (finished or interrupted,
        but an input changed: :meth:`stale_reason` says which), ``done`` or ``unneeded`` (the autoencoder stage when
        stage 2 uses ImageNet weights)."""
        if name == self.autoencoder_stage() and not self.uses_autoencoder():
            return "unneeded"  # stage 2 uses the ImageNet VGG-19 weights (present, or required: vgg_standin=false)
        if name == "eval":
            table = self.stage_dir("eval") / "table.json"
            info = self._run_info("eval")
            now = _recorded_overrides(self.eval_args())
            done = (
                table.is_file()
                and info.get("status") == "finished"
                and overrides_change(info, now) is None  # e.g. eval.methods changed: evaluate again
            )
            if not done:
                return "todo"
            return "stale" if self.stale_reason(name) else "done"
        run_dir = self.stage_dir(name)
        finished, resume = self._finished(run_dir), self._resume_ckpt(run_dir)
        if not (finished or resume):
            return "todo"
        self._check_same_settings(name)
        if self.stale_reason(name):
            return "stale"
        return "done" if finished else "resume"

    def stage_inputs(self, name: str) -> list[Input]:
        """What step ``name`` consumes (see the module docstring): the data, then the files it loads, each with the
        stage that produces it (``None``: an external file)."""
        data = Input("data", self.data_root, kind="data")
        if name == "eval":
            producers = dict.fromkeys(["stage1", *self.segnet_stages(), *self.refinement_stages(), "dagan"])
            return [data, *(Input(f"{s} checkpoint", self.eval_ckpt(s), producer=s) for s in producers)]
        inputs = [data]
        if self.p.stages[name].experiment == "stage2":
            inputs.append(Input("stage1 checkpoint", self.eval_ckpt("stage1"), producer="stage1"))
        weights = self.perceptual_weights(name)
        if weights is not None:
            autoencoder = self.autoencoder_stage() if weights == self.autoencoder_weights() else None
            inputs.append(Input("perceptual weights", weights, producer=autoencoder))
        return inputs

    def perceptual_weights(self, name: str) -> Path | None:
        """The weights file stage ``name``'s perceptual loss loads: its last ``model.perceptual.weights=`` override
        (default ``imagenet``: torchvision's cached VGG-19, or VGG-16 for DAGAN, whether or not it is there yet);
        ``None`` for ``random`` or a stage without a perceptual loss."""
        arch = PERCEPTUAL_ARCH.get(self.p.stages[name].experiment)
        if arch is None:
            return None
        value = "imagenet"
        for override in self._stage_overrides(name):
            key, _, v = override.partition("=")
            if key.lstrip("+~") == "model.perceptual.weights":
                value = v
        if value == "random":
            return None
        if value == "imagenet":
            from csmri.models.vgg import imagenet_weights_file

            return imagenet_weights_file(arch)
        return Path(value)

    def stale_reason(self, name: str) -> str | None:
        """Why step ``name``'s run no longer matches its inputs (``None``: it does, or it recorded none): a stage
        producing one of its inputs runs again first, or the inputs' contents differ from ``<stage>/inputs.json``.
        Without a record, the evaluation falls back to comparing file times (a checkpoint newer than its table);
        a training stage is kept (:meth:`unrecorded_note`)."""
        produced = [i for i in self.stage_inputs(name) if i.producer is not None]
        again = [f"{i.producer} runs again first ({i.name} will change)" for i in produced if self._runs(i.producer)]
        if again:
            return "; ".join(again)
        recorded = read_record(self.stage_dir(name))
        if recorded is None:
            if name != "eval":
                return None
            table = self.stage_dir("eval") / "table.json"
            ckpts = [i.path for i in self.stage_inputs(name) if i.kind == "file" and i.path.is_file()]
            newer = [str(c) for c in ckpts if c.stat().st_mtime >= table.stat().st_mtime]
            return f"inputs not recorded; {newer[0]} is newer than the table" if newer else None
        found = changes(recorded, identities(self.stage_inputs(name)))
        return "; ".join(found) if found else None

    def _runs(self, name: str) -> bool:
        return self.status(name) in RUNS

    def unrecorded_note(self, name: str) -> str | None:
        """A note for a kept run that recorded no inputs (a run of an earlier csmri, or trained by hand)."""
        if self.status(name) not in ("done", "resume") or read_record(self.stage_dir(name)) is not None:
            return None
        if name == "eval":
            return "eval: inputs not recorded (an earlier csmri); its checkpoints are compared by file time"
        return (
            f"{name}: inputs not recorded (an earlier csmri); kept as it is, not checked against its inputs "
            f"(move {self.stage_dir(name)} away to train it again)"
        )

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
        for step in self.steps:
            line = f"{step.name}: stale — {self.stale_reason(step.name)}" if step.status == "stale" else None
            _say(line or self.unrecorded_note(step.name))
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
            step.status = self.status(step.name)  # again: a step run above may have changed this one's inputs
            if step.status == "done":
                console.print(f"[green]✓ {step.name}: finished earlier, skipped[/green]")
                continue
            if step.status == "unneeded":
                console.print(
                    f"[green]✓ {step.name}: not needed (stage 2 uses the ImageNet VGG-19 weights), skipped[/green]"
                )
                continue
            console.rule(f"[{i}/{len(self.steps)}] {step.name} ({step.status}) — ETA of the pipeline {self.eta(ran)}")
            t0 = time.time()
            result = self.run_stage(step.name)
            step.elapsed_s = time.time() - t0
            if result.returncode != 0:
                raise SystemExit(
                    f"csmri reproduce: step {step.name} failed (exit {result.returncode}); rerun to resume"
                )
            step.status = "done"
            ran.append(step)
            console.print(f"[green]✓ {step.name} in {_minutes(step.elapsed_s)}[/green]")
        return self.collect(time.time() - start)

    def run_stage(self, name: str) -> CompletedProcess:
        """Run step ``name`` (a training stage or ``eval``) unless it is done: a stale training stage's old folder is
        first moved to ``<stage>.stale-<n>`` and the stage trains afresh (one line says why and where the old run
        went); a stale evaluation runs again in place. The inputs are recorded in ``inputs.json`` when a training run
        starts and, for every step, once it has finished."""
        status = self.status(name)
        if status in SKIPPED:
            return CompletedProcess([], 0)
        if status == "stale":
            reason = self.stale_reason(name)
            if name == "eval":
                _say(f"eval: stale — {reason}; evaluating again")
            else:
                old = self.set_aside(name)
                _say(f"{name}: stale — {reason}; the old run moved to {old}, training afresh")
        command = self.eval_command() if name == "eval" else self.train_command(name)
        console.print(" ".join(command[2:]), style="dim", markup=False, soft_wrap=True)  # overrides hold [lists]
        inputs = self.stage_inputs(name)
        if name != "eval":
            write_record(self.stage_dir(name), inputs)
        result = subprocess.run(command)
        if result.returncode == 0:
            write_record(self.stage_dir(name), inputs)
        return result

    def set_aside(self, name: str) -> Path:
        """Move stage ``name``'s folder to the first free ``<stage>.stale-<n>`` (n = 1, 2, ...) beside it; returns
        that path."""
        n = 1
        while (old := self.work / f"{name}.stale-{n}").exists():
            n += 1
        self.stage_dir(name).rename(old)
        return old

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


def _say(line: str | None) -> None:
    """Print one plain line unwrapped (paths and reasons stay whole); nothing for ``None``."""
    if line:
        console.print(line, markup=False, soft_wrap=True)


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
