"""The runner of a declared pipeline (:mod:`csmri.pipeline.spec`): plan, skip what is done, run what is not.

Each run lives in ``<work_dir>/<run name>`` and is named by content too: its key (:func:`.inputs.run_key`, in the plan
and ``inputs.json``) hashes its settings and its inputs' contents. Every planned run's config is composed before
anything runs (:mod:`.configs`). A training run is done when its ``run_info.json`` says ``finished`` beside
``checkpoints/best.ckpt``; an interrupted one resumes from its newest ``last.ckpt`` / ``on_exception.ckpt``; the
evaluation is done when its ``table.json`` exists, its run finished and its command is unchanged.

Stale runs: each step records the content identities of the inputs it consumed in ``<run>/inputs.json`` (the data,
every checkpoint or file it reads through a reference, and the external files its project's ``inputs`` hook names).
A finished or interrupted step is ``stale`` when an input's content differs from its record, when a step that
produces one of its inputs runs again in this invocation, or (training) when the settings it was trained with
(``run_info.json``'s ``overrides``) differ from those the pipeline now gives it — a stage's ``overrides``,
``train_overrides`` or the data settings changed (paths are not settings: a moved work dir or dataset is the same
run); contents are compared, never file times (a touched checkpoint changes nothing). A stale training run starts
afresh: its folder is moved to ``<run>.stale-<n>`` (never resumed, never deleted) and one line says why; a stale
evaluation runs again in its folder. The status is checked
again just before each step, so a step downstream of one retrained in this invocation runs again exactly when that
step's output changed. A run without ``inputs.json`` (trained before csmri recorded inputs, or by hand) keeps the
earlier rule, with a note: a finished training run is kept, the evaluation reruns when a checkpoint is newer than
its table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from csmri.config import override_key
from csmri.errors import ConfigError, TrainingError
from csmri.pipeline.configs import check_configs
from csmri.pipeline.inputs import Input, changes, identities, read_record, run_key, write_record
from csmri.pipeline.spec import Ref, Run, declared_runs, order, runs_of
from csmri.reporting import duration
from csmri.run_info import overrides_change, read_run_info

console = Console()
SKIPPED = ("done", "unneeded")  # step states that run nothing
RUNS = ("todo", "resume", "stale")  # step states that run something


@dataclass
class Step:
    name: str
    estimate_s: float
    status: str = "todo"  # todo | resume | stale | done | unneeded
    elapsed_s: float = 0.0


def pipeline_env(profile: str, work_dir: Path) -> dict[str, str]:
    """What a pipeline tells each ``csmri train`` it launches: W&B groups the runs by pipeline and work folder."""
    return {"CSMRI_PIPELINE": f"{profile}-{work_dir.name}", "CSMRI_PROFILE": profile}


class Runner:
    """Runs pipeline ``cfg``'s steps in dependency order, skipping finished ones; see the module docstring."""

    def __init__(self, cfg: DictConfig, hooks: ModuleType | None = None) -> None:
        self.cfg = cfg
        self.hooks = hooks
        self.work = Path(cfg.work_dir)
        self.results = Path(cfg.results)
        self.runs: dict[str, Run] = declared_runs(cfg, self.work)
        data = cfg.data
        resolution = data.get("resolution", 1.0)
        values = resolution if _listy(resolution) else [resolution]
        suffix = "" if resolution == 1 else "_res" + "-".join(f"{float(r):g}" for r in values)
        suffix += "".join(f"_{key}{value}" for key, value in sorted(self._source_settings().items()))
        default_root = Path(os.environ.get("CSMRI_DATA_DIR", "data")) / f"phantom_{data.get('size')}{suffix}"
        self.data_root = Path(data.root) if data.get("root") else default_root

    def _hook(self, name: str) -> Any:
        return getattr(self.hooks, name, None)

    def add(self, run: Run) -> Run:
        """Add ``run`` (e.g. a grid point) to the pipeline; its references must name known stages."""
        if run.name in self.runs:
            raise ConfigError(f"the pipeline already has a run named {run.name!r}")
        self.runs[run.name] = run
        order(self.runs, [run.name])
        return run

    def planned(self, targets: list[str] | None = None) -> list[str]:
        """The runs :meth:`run` goes through for ``targets`` (default: all): they and what they read from, in order."""
        return order(self.runs, targets)

    # -- artefacts ------------------------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        return self.runs[name].run_dir

    def ckpt(self, name: str, which: str | None = None) -> Path:
        """Run ``name``'s checkpoint ``which`` (``best`` | ``last``; default: the one its stage declares)."""
        return self.stage_dir(name) / "checkpoints" / f"{which or self.runs[name].checkpoint}.ckpt"

    def enabled(self, name: str) -> bool:
        """False when the run's stage declares ``enabled: false`` (resolved now: a resolver may look at files)."""
        stage = self.runs[name].stage
        stages = self.cfg.get("stages") or {}
        return bool(stages[stage].get("enabled", True)) if stage in stages else True

    def paths(self, ref: Ref) -> list[tuple[str, Path]]:
        """``(run name, path)`` of every enabled run ``ref`` stands for."""
        out = []
        for run in runs_of(self.runs, ref.stage):
            if self.enabled(run.name):
                if ref.attr == "dir":
                    path = run.run_dir
                elif ref.attr == "file":
                    path = run.run_dir / ref.file
                else:
                    path = self.ckpt(run.name, None if ref.attr == "ckpt" else ref.attr)
                out.append((run.name, path))
        return out

    # -- commands -------------------------------------------------------------------------------------
    def data_overrides(self) -> list[str]:
        """The pipeline's data settings and seed, for every step (the phantom's settings too: a phantom is checked
        against them)."""
        d = self.cfg.data
        phantom = [f"data.source.size={d.size}", f"data.source.patients={d.patients}", f"data.source.slices={d.slices}"]
        if "resolution" in d:  # a number or a list, as Hydra reads it back (0.5, [0.5,1.0])
            r = d.resolution
            phantom.append(f"data.source.resolution={'[' + ','.join(map(str, r)) + ']' if _listy(r) else r}")
        phantom += [f"data.source.{key}={value}" for key, value in self._source_settings().items()]
        return [
            f"data={d.config}",
            f"data.root={self.data_root}",
            f"data.acceleration={d.acceleration}",
            f"data.sample_n={d.sample_n if d.get('sample_n') is not None else 'null'}",
            f"seed={self.cfg.seed}",
            *(phantom if d.config == "phantom" else []),
        ]

    def _source_settings(self) -> dict[str, Any]:
        """The pipeline's further phantom settings (``data.source``: e.g. ``atrium``, ``noise_std``, ``tracing``; null
        = the data config's default), passed on as ``data.source.<key>`` and named in the default data folder, so
        phantoms of other settings never share it."""
        return {str(k): v for k, v in (self.cfg.data.get("source") or {}).items() if v is not None}

    def input_overrides(self, name: str) -> list[str]:
        """``key=path`` (or ``key=[a,b]``) per input of run ``name``; an input left without an enabled producer is
        left out."""
        out = []
        for key, value in self.runs[name].inputs.items():
            paths = [str(p) for ref in (value if isinstance(value, list) else [value]) for _, p in self.paths(ref)]
            if paths:
                out.append(f"{key}={paths[0]}" if len(paths) == 1 else f"{key}=[{','.join(paths)}]")
        return out

    def args(self, name: str) -> list[str]:
        """The arguments of run ``name``'s ``csmri train`` / ``csmri eval``, without its resume point: the data, its
        folder, its inputs, the pipeline's ``train_overrides`` (training), its overrides, then its ``settings``
        (which replace every earlier value of their keys)."""
        run = self.runs[name]
        train = [f"experiment={run.experiment}"] if run.command == "train" else []
        every = [*(self.cfg.get("train_overrides") or [])] if run.command == "train" else []
        args = [*train, *self.data_overrides(), f"hydra.run.dir={run.run_dir}", *self.input_overrides(name)]
        args += [*map(str, every), *run.overrides]
        if run.settings:
            args = [a for a in args if override_key(a) not in run.settings]
            args += [f"{k}={v}" for k, v in run.settings.items()]
        return args

    def recorded_args(self, name: str) -> list[str]:
        """What ``csmri train`` / ``eval`` records of the run's arguments (``run_info.json`` ``overrides``): without
        the ``hydra.*`` ones (see :func:`csmri.run_info.job_overrides`)."""
        return [a for a in self.args(name) if not a.startswith("hydra.")]

    def command(self, name: str) -> list[str]:
        """The command line of run ``name``: ``csmri train`` resumed from its newest checkpoint unless it has finished
        (as a one-job multirun through Hydra's launcher when ``launcher`` is not ``local``), or ``csmri eval``."""
        run, args = self.runs[name], self.args(name)
        if run.command == "eval":
            return [sys.executable, "-m", "csmri", "eval", *args]
        resume = None if _finished(run.run_dir) else _resume_ckpt(run.run_dir)
        args += [f"ckpt_path={resume}"] if resume is not None else []
        launcher = str(self.cfg.get("launcher", "local"))
        if launcher == "local":
            return [sys.executable, "-m", "csmri", "train", *args]
        sweep = [f"hydra.sweep.dir={run.run_dir.parent}", f"hydra.sweep.subdir={run.run_dir.name}"]
        rest = [a for a in args if not a.startswith("hydra.run.dir=")]
        return [sys.executable, "-m", "csmri", "train", "-m", f"hydra/launcher={launcher}", *rest, *sweep]

    # -- state ----------------------------------------------------------------------------------------
    def stage_inputs(self, name: str) -> list[Input]:
        """What run ``name`` consumes: the data, each file a reference of its inputs names (with the run producing
        it) and the external files of the project's ``inputs`` hook."""
        found = {"data": Input("data", self.data_root, kind="data")}
        for ref in self.runs[name].refs():
            for producer, path in self.paths(ref):
                label = f"{producer}/{ref.file}" if ref.attr == "file" else f"{producer} checkpoint"
                label = f"{producer} folder" if ref.attr == "dir" else label
                found.setdefault(label, Input(label, path, producer=producer))
        extra = self._hook("inputs")
        for item in extra(self, self.runs[name]) if extra else []:
            found.setdefault(item.name, item)
        return list(found.values())

    def key(self, name: str) -> str:
        """Run ``name``'s key now (:func:`csmri.pipeline.inputs.run_key`)."""
        return run_key(self.recorded_args(name), identities(self.stage_inputs(name)))

    def status(self, name: str) -> str:
        """``todo`` (nothing to keep), ``resume`` (interrupted, inputs unchanged), ``stale`` (finished or interrupted,
        but an input changed: :meth:`stale_reason` says which), ``done`` or ``unneeded`` (its stage is disabled)."""
        if not self.enabled(name):
            return "unneeded"
        run = self.runs[name]
        if run.command == "eval":
            info = read_run_info(run.run_dir)
            done = (
                (run.run_dir / "table.json").is_file()
                and info.get("status") == "finished"
                and overrides_change(info, self.recorded_args(name)) is None  # e.g. methods changed: evaluate again
            )
            if not done:
                return "todo"
            return "stale" if self.stale_reason(name) else "done"
        finished, resume = _finished(run.run_dir), _resume_ckpt(run.run_dir)
        if not (finished or resume):
            return "todo"
        if self.stale_reason(name):
            return "stale"
        return "done" if finished else "resume"

    def stale_reason(self, name: str) -> str | None:
        """Why run ``name`` no longer matches its settings and inputs (``None``: it does, or it recorded neither): a
        training run was trained with other settings (:meth:`settings_change`), a run producing one of its inputs
        runs again first, or the inputs' contents differ from ``<run>/inputs.json``. Without a record of its inputs,
        the evaluation falls back to comparing file times (a checkpoint newer than its table); a training run is
        kept unless its settings changed (:meth:`unrecorded_note`)."""
        change = self.settings_change(name)
        reasons = [f"trained with other settings ({change})"] if change else []
        produced = [i for i in self.stage_inputs(name) if i.producer is not None]
        again = [f"{i.producer} runs again first ({i.name} will change)" for i in produced if self._runs(i.producer)]
        if again:
            return "; ".join(reasons + again)
        recorded = read_record(self.stage_dir(name))
        if recorded is None:
            if self.runs[name].command != "eval":
                return "; ".join(reasons) or None
            table = self.stage_dir(name) / "table.json"
            files = [i.path for i in self.stage_inputs(name) if i.kind == "file" and i.path.is_file()]
            newer = [str(c) for c in files if c.stat().st_mtime >= table.stat().st_mtime]
            return f"inputs not recorded; {newer[0]} is newer than the table" if newer else None
        reasons += changes(recorded, identities(self.stage_inputs(name)))
        return "; ".join(reasons) or None

    def settings_change(self, name: str) -> str | None:
        """How the overrides training run ``name`` recorded (``run_info.json``) differ from those the pipeline now
        gives it (:meth:`recorded_args`): ``"the run had [...], now [...]"``; ``None`` when they agree, for the
        evaluation (a changed command makes it ``todo``) and for a run that recorded none (an earlier csmri). Paths
        whose contents ``inputs.json`` compares (``data.root``, the run's inputs) are left out: a dataset or work
        dir moved elsewhere is the same run."""
        run = self.runs[name]
        if run.command == "eval":
            return None
        info = read_run_info(run.run_dir)
        if info.get("overrides") is None:
            return None
        paths = {"data.root", *run.inputs}

        def settings(overrides: list[str]) -> list[str]:
            return [o for o in overrides if override_key(o) not in paths]

        return overrides_change({"overrides": settings(info["overrides"])}, settings(self.recorded_args(name)))

    def _runs(self, name: str) -> bool:
        return self.status(name) in RUNS

    def unrecorded_note(self, name: str) -> str | None:
        """A note for a kept run that recorded no inputs (a run of an earlier csmri, or trained by hand)."""
        if self.status(name) not in ("done", "resume") or read_record(self.stage_dir(name)) is not None:
            return None
        if self.runs[name].command == "eval":
            return f"{name}: inputs not recorded (an earlier csmri); its checkpoints are compared by file time"
        return (
            f"{name}: inputs not recorded (an earlier csmri); kept as it is, not checked against its inputs "
            f"(move {self.stage_dir(name)} away to train it again)"
        )

    # -- running --------------------------------------------------------------------------------------
    def steps(self, names: list[str]) -> list[Step]:
        return [Step(n, 60 * self.runs[n].estimate_min, self.status(n)) for n in names]

    def print_plan(self, steps: list[Step]) -> None:
        table = Table(title=f"{self.cfg.get('name', 'pipeline')}: {self.cfg.get('description', '')}")
        for column in ("step", "status", "run key", "estimate"):
            table.add_column(column)
        for step in steps:
            skipped = step.status in SKIPPED
            key = "-" if step.status == "unneeded" else self.key(step.name)
            table.add_row(step.name, step.status, key, "-" if skipped else duration(step.estimate_s))
        console.print(table)
        for step in steps:
            line = f"{step.name}: stale — {self.stale_reason(step.name)}" if step.status == "stale" else None
            _say(line or self.unrecorded_note(step.name))
        todo = sum(s.estimate_s for s in steps if s.status not in SKIPPED)
        console.print(f"data: {self.data_root} | work dir: {self.work} | results: {self.results}")
        console.print(f"[bold]estimated time: {duration(todo)}[/bold] (estimates measured on 2 CPU cores)")

    def run(self, targets: list[str] | None = None) -> Path:
        """Run ``targets`` (default: every run, then the project's ``collect`` hook) and what they read from."""
        start = time.time()
        if check := self._hook("check"):
            check(self)
        check_configs(self, self.planned(targets))
        steps = self.steps(self.planned(targets))
        self.print_plan(steps)
        self.data_root.parent.mkdir(parents=True, exist_ok=True)
        ran: list[Step] = []
        for i, step in enumerate(steps, 1):
            step.status = self.status(step.name)  # again: a step run above may have changed this one's inputs
            if step.status in SKIPPED:
                why = "finished earlier" if step.status == "done" else "not needed (its stage is disabled)"
                console.print(f"[green]✓ {step.name}: {why}, skipped[/green]")
                continue
            console.rule(f"[{i}/{len(steps)}] {step.name} ({step.status}) — ETA {_eta(steps, ran)}")
            t0 = time.time()
            result = self.run_stage(step.name)
            step.elapsed_s = time.time() - t0
            if result.returncode != 0:
                raise TrainingError(f"step {step.name} failed (exit {result.returncode})", "run again to resume")
            step.status = "done"
            ran.append(step)
            console.print(f"[green]✓ {step.name} in {duration(step.elapsed_s)}[/green]")
        return self.collect(time.time() - start) if targets is None else self.results

    def run_stage(self, name: str) -> CompletedProcess:
        """Run step ``name`` unless it is done: a stale training run's old folder is first moved to
        ``<run>.stale-<n>`` and it trains afresh (one line says why and where the old run went); a stale evaluation
        runs again in place. The inputs are recorded in ``inputs.json`` when a training run starts and, for every
        step, once it has finished."""
        status = self.status(name)
        if status in SKIPPED:
            return CompletedProcess([], 0)
        is_eval = self.runs[name].command == "eval"
        if status == "stale":
            reason = self.stale_reason(name)
            if is_eval:
                _say(f"{name}: stale — {reason}; evaluating again")
            else:
                _say(f"{name}: stale — {reason}; the old run moved to {self.set_aside(name)}, training afresh")
        command = self.command(name)
        console.print(" ".join(command[2:]), style="dim", markup=False, soft_wrap=True)  # overrides hold [lists]
        inputs, settings = self.stage_inputs(name), self.recorded_args(name)
        if not is_eval:
            write_record(self.stage_dir(name), inputs, settings)
        profile = str(self.cfg.get("name") or "pipeline")  # W&B's group and profile tag (csmri.app.loggers)
        result = subprocess.run(command, env={**os.environ, **pipeline_env(profile, self.work)})
        if result.returncode == 0:
            write_record(self.stage_dir(name), inputs, settings)
        return result

    def set_aside(self, name: str) -> Path:
        """Move run ``name``'s folder to the first free ``<run>.stale-<n>`` (n = 1, 2, ...) beside it."""
        n, folder = 1, self.stage_dir(name)
        while (old := folder.with_name(f"{folder.name}.stale-{n}")).exists():
            n += 1
        folder.rename(old)
        return old

    def collect(self, elapsed_s: float) -> Path:
        """The project's ``collect`` hook (e.g. the results folder and its README); returns ``results``."""
        hook = self._hook("collect")
        return hook(self, elapsed_s) if hook else self.results


def _listy(value: Any) -> bool:
    return isinstance(value, list | tuple | ListConfig)


def _finished(run_dir: Path) -> bool:
    return read_run_info(run_dir).get("status") == "finished" and (run_dir / "checkpoints" / "best.ckpt").is_file()


def _resume_ckpt(run_dir: Path) -> Path | None:
    """The newest of ``last.ckpt`` / ``on_exception.ckpt`` under ``run_dir/checkpoints``, if any."""
    existing = [c for c in (run_dir / "checkpoints" / f for f in ("last.ckpt", "on_exception.ckpt")) if c.is_file()]
    return max(existing, key=lambda c: c.stat().st_mtime) if existing else None


def _eta(steps: list[Step], done: list[Step]) -> str:
    """Remaining time: the remaining estimates scaled by how fast the finished steps went."""
    spent = sum(s.elapsed_s for s in done)
    estimated = sum(s.estimate_s for s in done) or 1.0
    remaining = sum(s.estimate_s for s in steps if s.status not in SKIPPED and s not in done)
    return duration(remaining * (spent / estimated if spent else 1.0))


def _say(line: str | None) -> None:
    """Print one plain line unwrapped (paths and reasons stay whole); nothing for ``None``."""
    if line:
        console.print(line, markup=False, soft_wrap=True)
