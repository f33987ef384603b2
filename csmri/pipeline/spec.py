"""A declared pipeline: its file, its runs and the graph their references make.

A pipeline file (YAML; composed with Hydra, so ``key=value`` overrides and typos behave as for any csmri config)::

    name: quick                          # shown in the plan
    description: 128x128 phantom, short CPU training
    hooks: experiments.seitzer2018.project   # optional: a module with the project's checks and results (below)
    seed: 0                              # every step's seed= unless a run has its own
    work_dir: outputs/reproduce/quick    # every run in <work_dir>/<run name>
    results: results
    launcher: local                      # local: `csmri train` subprocesses; a Hydra launcher name (slurm) otherwise
    data: {config: phantom, root: null, size: 128, patients: 37, slices: 20, acceleration: 8}
    train_overrides: []                  # every training run
    stages:                              # `csmri train` runs, in this order unless references say otherwise
      stage1: {experiment: stage1, overrides: [trainer.max_epochs=200], checkpoint: best, estimate_min: 22}
      stage2:
        experiment: stage2
        seeds: [0, 1, 2]                 # one run per seed: `stage2` at the pipeline's seed, `stage2_seed1`, ...
        enabled: true                    # false (or a resolver): not needed; inputs that refer to it are left out
        inputs: {model.net.recon_ckpt: "${stage:stage1.ckpt}"}   # override key -> reference(s)
        overrides: [trainer.max_epochs=3]
    eval:                                # the evaluation (`csmri eval`), run last
      methods: [zero_filled, recnet, refinement]
      inputs: {recnet.ckpt: "${stage:stage1.ckpt}", refinement.ckpt: "${stage:stage2.ckpt}"}
      overrides: []

References: ``${stage:NAME.best}`` and ``${stage:NAME.last}`` (that checkpoint of NAME's run), ``${stage:NAME.ckpt}``
(the checkpoint NAME declares in ``checkpoint``, default ``best``), ``${stage:NAME.dir}`` (its folder) and
``${stage:NAME/FILE}`` (a file its run writes). A stage with several seeds stands for all its runs, so a reference to
it is a list; a list of references is one list. An input is passed as ``key=value`` (one path) or ``key=[a,b]``.

Hooks (all optional): ``check(runner)`` before anything runs, ``inputs(runner, run)`` the external files a run reads
(:class:`csmri.pipeline.inputs.Input`; their contents count as inputs), ``collect(runner, elapsed_s)`` after the
evaluation. Importing the module may register OmegaConf resolvers the file uses (e.g. in ``enabled``).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from csmri.errors import ConfigError

ATTRS = ("best", "last", "ckpt", "dir")
_REF = re.compile(r"\$\{stage:([^}]*)\}")
_NAME = r"[A-Za-z_][\w\-]*"
_ATTR_REF = re.compile(rf"({_NAME})\.({'|'.join(ATTRS)})")
_FILE_REF = re.compile(rf"({_NAME})/(.+)")


@dataclass(frozen=True)
class Ref:
    """A reference to a stage's output: ``attr`` is one of :data:`ATTRS` or ``file`` (then ``file`` names it)."""

    stage: str
    attr: str
    file: str = ""

    def __str__(self) -> str:
        return f"${{stage:{self.stage}/{self.file}}}" if self.attr == "file" else f"${{stage:{self.stage}.{self.attr}}}"


def parse_ref(text: str, where: str = "") -> Ref | None:
    """``text`` as a :class:`Ref` if it is one reference (``${stage:...}``), ``None`` if it holds none; a malformed
    reference, or one mixed into other text, is a :class:`ConfigError` (``where`` says where it was found)."""
    found = _REF.findall(text)
    if not found:
        return None
    place = f" in {where}" if where else ""
    if len(found) > 1 or _REF.fullmatch(text.strip()) is None:
        raise ConfigError(f"a stage reference must be a whole value{place}: {text!r}", "e.g. ${stage:stage1.best}")
    body = found[0].strip()
    if m := _ATTR_REF.fullmatch(body):
        return Ref(m.group(1), m.group(2))
    if m := _FILE_REF.fullmatch(body):
        return Ref(m.group(1), "file", m.group(2))
    raise ConfigError(
        f"malformed stage reference{place}: {text!r}",
        f"write ${{stage:NAME.ATTR}} (ATTR: {' | '.join(ATTRS)}) or ${{stage:NAME/FILE}}",
    )


@dataclass
class Run:
    """One step of the pipeline: a ``csmri train`` run of a stage (one per seed) or the ``csmri eval`` run.

    ``overrides`` come after the pipeline's data and training settings; ``settings`` (a grid point's) come last and
    replace every other value of their keys; ``inputs`` map an override key to the references it is built from (a
    list: passed as a list)."""

    name: str
    stage: str
    command: str  # train | eval
    run_dir: Path
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    inputs: dict[str, Ref | list[Ref]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    checkpoint: str = "best"
    estimate_min: float = 0.0
    seed: int | None = None  # a run's own seed (None: the pipeline's)

    def refs(self) -> list[Ref]:
        """Every reference of the run's inputs, in order."""
        return [r for v in self.inputs.values() for r in (v if isinstance(v, list) else [v])]

    def variant(self, name: str, run_dir: Path, settings: Mapping[str, Any]) -> Run:
        """This run with ``settings`` (key -> a value or a :class:`Ref`) — a grid point: a reference becomes the key's
        input, a value replaces the key's input (if any) and every other value of it."""
        inputs, own = dict(self.inputs), dict(self.settings)
        for key, value in settings.items():
            inputs.pop(key, None)
            own.pop(key, None)
            if isinstance(value, Ref | list):
                inputs[key] = value
            else:
                own[key] = str(value)
        seed = int(own["seed"]) if "seed" in own else self.seed
        return replace(self, name=name, run_dir=run_dir, inputs=inputs, settings=own, seed=seed)


def _inputs(node: Any, where: str) -> dict[str, Ref | list[Ref]]:
    """A stage's ``inputs`` mapping, read without resolving (references are not OmegaConf interpolations)."""
    if node is None:
        return {}
    raw = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.inputs must map override keys to stage references, got {raw!r}")
    out: dict[str, Ref | list[Ref]] = {}
    for key, value in raw.items():
        values = value if isinstance(value, list) else [value]
        refs = [parse_ref(str(v), f"{where}.inputs.{key}") for v in values]
        if any(r is None for r in refs):
            raise ConfigError(f"{where}.inputs.{key}: every value must be a stage reference, got {value!r}")
        out[str(key)] = refs if isinstance(value, list) else refs[0]  # type: ignore[assignment]
    return out


def _seeds(stage: DictConfig, where: str) -> list[int | None]:
    seeds = stage.get("seeds")
    if seeds is None:
        return [None]
    if not isinstance(seeds, ListConfig | list) or not seeds:
        raise ConfigError(f"{where}.seeds must be a non-empty list of integers, got {seeds!r}")
    return [int(s) for s in seeds]


def declared_runs(cfg: DictConfig, work_dir: Path) -> dict[str, Run]:
    """The runs of pipeline ``cfg`` by name: each stage's (one per seed of ``seeds``: the pipeline's own seed, or the
    first, is named like the stage, the others ``<stage>_seed<s>`` with ``seed=<s>`` last among their overrides),
    then ``eval``. Unknown references and cycles are errors (:func:`order`)."""
    runs: dict[str, Run] = {}
    stages = cfg.get("stages") or {}
    for stage_name in stages:
        stage, where = stages[stage_name], f"stages.{stage_name}"
        if not stage.get("experiment"):
            raise ConfigError(f"{where} names no experiment", "add experiment: NAME (csmri/conf/experiment/*.yaml)")
        seeds = _seeds(stage, where)
        own = cfg.get("seed") if cfg.get("seed") in seeds else seeds[0]  # the run named like the stage
        for seed in seeds:
            name = stage_name if seed == own else f"{stage_name}_seed{seed}"
            seed = None if seed == cfg.get("seed") else seed  # the pipeline's seed: no override of its own
            if name in runs:
                raise ConfigError(f"two runs are named {name!r}", f"rename the stage {stage_name!r}")
            runs[name] = Run(
                name=name,
                stage=str(stage_name),
                command="train",
                run_dir=work_dir / name,
                experiment=str(stage.experiment),
                overrides=[*map(str, stage.get("overrides") or []), *([f"seed={seed}"] if seed is not None else [])],
                inputs=_inputs(stage.get("inputs"), where),
                checkpoint=str(stage.get("checkpoint", "best")),
                estimate_min=float(stage.get("estimate_min", 0)),
                seed=seed,
            )
    if cfg.get("eval") is not None:
        e = cfg.eval
        runs["eval"] = Run(
            name="eval",
            stage="eval",
            command="eval",
            run_dir=work_dir / "eval",
            overrides=[f"methods=[{','.join(map(str, e.methods))}]", *map(str, e.get("overrides") or [])],
            inputs=_inputs(e.get("inputs"), "eval"),
            estimate_min=float(e.get("estimate_min", 0)),
        )
    order(runs)
    return runs


def runs_of(runs: Mapping[str, Run], stage: str) -> list[Run]:
    """The runs a reference to ``stage`` stands for: the stage's runs (one per seed), or the run so named."""
    found = [r for r in runs.values() if r.stage == stage]
    return found or ([runs[stage]] if stage in runs else [])


def dependencies(runs: Mapping[str, Run], name: str) -> list[str]:
    """The runs that run ``name`` reads from, in its inputs' order; an unknown stage is a :class:`ConfigError`."""
    out: list[str] = []
    for ref in runs[name].refs():
        found = runs_of(runs, ref.stage)
        if not found:
            raise ConfigError(
                f"{name}: unknown stage {ref.stage!r} in {ref}",
                f"the stages are {sorted({r.stage for r in runs.values()})}",
            )
        out += [r.name for r in found if r.name not in out]
    return out


def order(runs: Mapping[str, Run], targets: Iterable[str] | None = None) -> list[str]:
    """The names of ``targets`` (default: every run) and of every run they read from, each after its inputs' producers
    and otherwise in declaration order. A cycle is a :class:`ConfigError` naming it."""
    wanted: list[str] = []
    stack = list(targets if targets is not None else runs)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.append(name)
            stack += dependencies(runs, name)
    placed: list[str] = []
    pending = [n for n in runs if n in wanted]
    while pending:
        ready = next((n for n in pending if all(d in placed for d in dependencies(runs, n))), None)
        if ready is None:
            raise ConfigError(f"the stages' references form a cycle: {' -> '.join(_cycle(runs, pending))}")
        placed.append(ready)
        pending.remove(ready)
    return placed


def _cycle(runs: Mapping[str, Run], pending: list[str]) -> list[str]:
    """One cycle among ``pending`` runs (each has a pending dependency), as a closed path ``a -> b -> a``."""
    path = [pending[0]]
    while True:
        nxt = next(d for d in dependencies(runs, path[-1]) if d in pending)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)


def import_hooks(module: str | None, pipeline_file: Path | None = None) -> ModuleType | None:
    """The pipeline's ``hooks`` module; the folder above its top package (found from ``pipeline_file`` upwards) goes on
    ``sys.path`` first, so a project beside the library imports without being installed."""
    if not module:
        return None
    relative = Path(*module.split("."))
    for folder in Path(pipeline_file).resolve().parents if pipeline_file else ():
        if (folder / relative).with_suffix(".py").is_file() or (folder / relative / "__init__.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            break
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"the pipeline's hooks module {module!r} cannot be imported ({err})") from err
