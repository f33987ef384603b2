"""`csmri study` / `make study`: the α / loss-weight study of stage 2, on a pipeline of the paper (default quick).

    csmri study [key=value ...]          # keys of experiments/seitzer2018/study.yaml, e.g. alpha_targets=[0.01,1,100]

The study is a grid over the pipeline's ``stage2`` run, run by the same runner as ``csmri reproduce``
(:mod:`csmri.pipeline`) in the same work dir, so a finished ``make reproduce`` is reused:

1. Every grid point is a variant of stage 2 (its inputs and overrides, one setting changed) in
   ``<work_dir>/study/<sweep>/<i>``: a sweep over ``loss.alpha_target`` (α such that α·L_pen equals it at the first
   step: small = the refinement dominates, large = the penalty switches it off), one over the perceptual/adversarial
   balance ``loss.weights.vgg`` at the default α, and one over perceptual backbones (``model.perceptual.weights``):
   ``autoencoder`` is VGG-19 trained as an autoencoder of the profile's fully-sampled training images (the profile's
   stage, else the study's own run in ``<work_dir>/study/autoencoder``), ``random`` the seeded random stand-in. A
   fourth runs the default point again with other ``seeds``: stage 2's run-to-run spread, which a setting's
   difference must beat before it means anything. The sweeps named in ``seeded_sweeps`` run every point with those
   seeds too (in ``<sweep>-seed<s>``), so that a setting is compared with the default over the same seeds.
2. The runner trains what each point reads from (stage 1, the segmentation nets, DAGAN, the autoencoder) and then
   the points, each only if it is not done, and again if it is stale (e.g. stage 1 was retrained).
3. RecNet, DAGAN and every point's last checkpoint are evaluated on the **validation** split (settings are chosen on
   it, never on the test split) with the same fixed per-slice masks; ``results/study/`` gets ``table.md``,
   ``table.json`` and ``figure.png`` (:mod:`experiments.seitzer2018.study_report`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import DictConfig

from csmri.errors import ConfigError
from csmri.pipeline import Ref, Run, load_pipeline, open_pipeline, order
from experiments.seitzer2018 import PIPELINES, STUDY_CONFIG
from experiments.seitzer2018.study_report import metrics, write

SETTING_SWEEPS = ("alpha", "weights", "backbone")  # the sweeps that vary a setting (``seed`` repeats one)
AUTOENCODER_WEIGHTS = "vgg19_autoencoder.pth"  # the file a `vgg_autoencoder` run exports into its folder


class Sweep(NamedTuple):
    """One sweep of stage 2: ``key`` over ``values``, at the profile's seed or at ``seed``."""

    key: str
    values: list[Any]
    kind: str  # alpha | weights | backbone | seed: what it varies (a seeded repeat keeps its sweep's kind)
    seed: int | None = None  # a seeded repeat's seed; None: the profile's


def pipeline_file(name: str) -> Path:
    """``pipelines/<name>.yaml``; an unknown name is a :class:`ConfigError` listing the known ones."""
    path = PIPELINES / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PIPELINES.glob("*.yaml"))
        raise ConfigError(f"unknown profile {name!r}", f"choose one of {known}")
    return path


def load_study(argv: list[str]) -> DictConfig:
    """``study.yaml`` with ``key=value`` overrides (a key not in the file is an error)."""
    return load_pipeline(STUDY_CONFIG, argv)


class Study:
    """The points of the study as runs of the profile's runner, and their evaluation; see the module docstring."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.pipeline = open_pipeline(pipeline_file(cfg.profile), list(cfg.profile_overrides))
        self.work = self.pipeline.work / "study"
        self.results = Path(cfg.results)
        if "stage2" not in self.pipeline.runs:
            raise ConfigError(f"profile {cfg.profile} has no stage2 run to vary")

    # -- the sweeps ---------------------------------------------------------------------------------------------
    def sweeps(self) -> dict[str, Sweep]:
        """Sweep name (its folder under the study's work dir) -> :class:`Sweep`. The default point (default α, w_vgg
        and backbone) is run once per seed: at the profile's seed by :meth:`default_point_sweep`, at the other
        ``seeds`` by ``seed``; the other sweeps leave it out, and a sweep left without values is dropped. A sweep
        named in ``seeded_sweeps`` is repeated without its default value at every other seed, as ``<name>-seed<s>``."""
        unknown = sorted(set(self.cfg.seeded_sweeps) - set(SETTING_SWEEPS))
        if unknown:
            raise ConfigError(f"seeded_sweeps: unknown sweep(s) {unknown}", f"choose from {' | '.join(SETTING_SWEEPS)}")
        alpha_runs_default = self.default_point_sweep() == "alpha"
        weights = [v for v in self.cfg.vgg_weights if not (alpha_runs_default and v == self.cfg.default_vgg_weight)]
        settings = {
            "alpha": ("loss.alpha_target", list(self.cfg.alpha_targets)),
            "weights": ("loss.weights.vgg", weights),
            "backbone": ("model.perceptual.weights", [self.backbone_weights(b) for b in self.swept_backbones()]),
        }
        defaults = self.default_values()
        sweeps = {name: Sweep(key, values, name) for name, (key, values) in settings.items()}
        sweeps["seed"] = Sweep("seed", self.other_seeds(), "seed")
        for name in self.cfg.seeded_sweeps:
            key, values = settings[name]
            for seed in self.other_seeds():
                sweeps[f"{name}-seed{seed}"] = Sweep(key, [v for v in values if v != defaults[name]], name, seed)
        return {name: sweep for name, sweep in sweeps.items() if sweep.values}

    def default_values(self) -> dict[str, Any]:
        """The default point's value of each setting sweep's key."""
        return {
            "alpha": self.cfg.default_alpha_target,
            "weights": self.cfg.default_vgg_weight,
            "backbone": self.backbone_weights(self.default_backbone()),
        }

    def other_seeds(self) -> list[int]:
        """``seeds`` without the profile's own (its runs are the sweeps' own points)."""
        return [s for s in self.cfg.seeds if s != self.pipeline.cfg.seed]

    def default_point_sweep(self) -> str:
        """The first sweep that lists its default value: ``alpha``, else ``weights``, else ``backbone`` (which then
        runs stage 2's own backbone even if ``backbones`` leaves it out)."""
        if self.cfg.default_alpha_target in self.cfg.alpha_targets:
            return "alpha"
        return "weights" if self.cfg.default_vgg_weight in self.cfg.vgg_weights else "backbone"

    def points(self) -> list[dict[str, Any]]:
        """Every run of the study: its name, folder, sweep kind, settings and whether it is the default point."""
        field = {"loss.alpha_target": "alpha_target", "loss.weights.vgg": "vgg_weight", "seed": "seed"}
        defaults = {
            "alpha_target": self.cfg.default_alpha_target,
            "vgg_weight": self.cfg.default_vgg_weight,
            "seed": self.pipeline.cfg.seed,
        }
        default_sweep, default_value = self.default_point_sweep(), self.default_values()
        points = []
        for name, sweep in self.sweeps().items():
            for i, value in enumerate(sweep.values):
                settings = {**defaults, **({"seed": sweep.seed} if sweep.seed is not None else {})}
                if sweep.key in field:
                    settings[field[sweep.key]] = value
                default = sweep.kind == "seed" or (name == default_sweep and value == default_value[name])
                folder = self.work / name / str(i)
                points.append(
                    {"name": f"{name}/{i}", "dir": folder, "sweep": sweep.kind, "default": default, **settings}
                )
        return points

    # -- the autoencoder backbone --------------------------------------------------------------------------------
    def autoencoder_stage(self) -> str | None:
        """The profile's autoencoder run (``experiment: vgg_autoencoder``), if it has one."""
        names = [n for n, r in self.pipeline.runs.items() if r.experiment == "vgg_autoencoder" and n != "study/ae"]
        return names[0] if names else None

    @property
    def autoencoder_dir(self) -> Path:
        """The profile's autoencoder stage's folder, else the study's own run's."""
        stage = self.autoencoder_stage()
        return self.pipeline.stage_dir(stage) if stage else self.work / "autoencoder"

    def default_backbone(self) -> str:
        """Stage 2's own backbone: the profile's autoencoder where stage 2 uses it (offline), else ImageNet VGG-19
        (or the random stand-in it falls back to)."""
        stage = self.autoencoder_stage()
        return "autoencoder" if stage and self.pipeline.enabled(stage) else "imagenet"

    def swept_backbones(self) -> list[str]:
        """``backbones``, without stage 2's own where the α or weight sweep already runs the default point, and with
        it (first) where neither does: the default point is always run."""
        default, listed = self.default_backbone(), list(self.cfg.backbones)
        if self.default_point_sweep() != "backbone":
            return [b for b in listed if b != default]
        return listed if default in listed else [default, *listed]

    def backbone_weights(self, backbone: str) -> str:
        """``model.perceptual.weights`` of a backbone of ``backbones``: ``autoencoder`` is this study's own file."""
        if backbone == "autoencoder":
            return str(self.autoencoder_dir / AUTOENCODER_WEIGHTS)
        if backbone in ("random", "imagenet") or Path(backbone).is_file():
            return backbone
        raise ConfigError(
            f"unknown backbone {backbone!r}", "choose autoencoder | random | imagenet | an existing weights file"
        )

    def autoencoder_run(self) -> str:
        """The run that trains the autoencoder backbone: the profile's stage, else the study's own (added once)."""
        stage = self.autoencoder_stage()
        if stage:
            return stage
        if "study/ae" not in self.pipeline.runs:
            overrides = list(map(str, self.cfg.autoencoder_overrides))
            run = Run("study/ae", "study/ae", "train", self.work / "autoencoder", "vgg_autoencoder", overrides)
            self.pipeline.add(run)
        return "study/ae"

    def autoencoder_command(self) -> list[str]:
        """Trains the autoencoder backbone on the profile's data (resumed from its last checkpoint if any)."""
        return self.pipeline.command(self.autoencoder_run())

    # -- the grid as runs ---------------------------------------------------------------------------------------
    def _value(self, value: Any) -> Any:
        """A swept value as a run setting: the autoencoder's file becomes a reference to the run that writes it."""
        if value == self.backbone_weights("autoencoder") and value not in ("random", "imagenet"):
            return Ref(self.autoencoder_run(), "file", AUTOENCODER_WEIGHTS)
        return value

    def point_run(self, sweep_name: str, i: int) -> Run:
        """Grid point ``i`` of sweep ``sweep_name``: stage 2 with the default α and w_vgg, ``train_overrides``, the
        swept value and a seeded repeat's seed."""
        sweep = self.sweeps()[sweep_name]
        settings: dict[str, Any] = {
            "loss.alpha_target": self.cfg.default_alpha_target,
            "loss.weights.vgg": self.cfg.default_vgg_weight,
        }
        settings |= dict(str(o).split("=", 1) for o in self.cfg.train_overrides)
        settings[sweep.key] = self._value(sweep.values[i])
        if sweep.seed is not None:
            settings["seed"] = sweep.seed
        name = f"study/{sweep_name}/{i}"
        return self.pipeline.runs["stage2"].variant(name, self.work / sweep_name / str(i), settings)

    def train_command(self, point: str) -> list[str]:
        """The command of grid point ``point`` (``<sweep>/<i>``)."""
        self.add_runs()
        return self.pipeline.command(f"study/{point}")

    def eval_run(self, name: str, method: str, ckpt: Ref | list[Ref]) -> Run:
        """``csmri eval`` of ``method``'s checkpoint(s) on the study's split, SIS by the profile's segmentation nets."""
        segnet = self.pipeline.runs["eval"].inputs["segnet.ckpt"]
        overrides = [f"split={self.cfg.split}", f"methods=[{method}]", f"reference={method}"]
        overrides += ["figure.max_rows=2", "wandb.enabled=false"]
        folder = self.work / "eval" / name.replace("/", "_")
        inputs = {f"{method}.ckpt": ckpt, "segnet.ckpt": segnet}
        return Run(f"study/eval/{name}", f"study/eval/{name}", "eval", folder, overrides=overrides, inputs=inputs)

    def add_runs(self) -> list[str]:
        """Add every grid point and evaluation to the runner (once); returns the evaluations' names."""
        evals = []
        for method in self.cfg.references:
            if f"study/eval/{method}" not in self.pipeline.runs:
                self.pipeline.add(self.eval_run(method, method, self.pipeline.runs["eval"].inputs[f"{method}.ckpt"]))
            evals.append(f"study/eval/{method}")
        for point in self.points():
            sweep, i = point["name"].split("/")
            if f"study/{point['name']}" not in self.pipeline.runs:
                self.pipeline.add(self.point_run(sweep, int(i)))
                self.pipeline.add(self.eval_run(point["name"], "refinement", Ref(f"study/{point['name']}", "last")))
            evals.append(f"study/eval/{point['name']}")
        return evals

    def ensure_prerequisites(self) -> None:
        """Train (or retrain, if stale) what the points and references read from: stage 1, the segmentation nets,
        DAGAN, the autoencoder backbone."""
        evals = self.add_runs()
        own = {*evals, *(f"study/{p['name']}" for p in self.points())}
        self.pipeline.run([n for n in order(self.pipeline.runs, evals) if n not in own])

    def run(self) -> Path:
        self.pipeline.run(self.add_runs())
        import torch

        out = {n: json.loads((self.pipeline.stage_dir(n) / "table.json").read_text()) for n in self.add_runs()}
        names = {"recnet": "RecNet", "dagan": "DAGAN"}
        references = {names.get(m, m): metrics(_row(out[f"study/eval/{m}"], m)) for m in self.cfg.references}
        rows = []
        for point in self.points():
            ckpt = point["dir"] / "checkpoints" / "last.ckpt"
            row = _row(out[f"study/eval/{point['name']}"], "refinement")
            checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
            lam = float(checkpoint["state_dict"]["refinement.gate"])
            backbone = checkpoint.get("perceptual_backbone", "n/a")
            rows.append({**point, "dir": str(point["dir"]), "lambda": lam, "backbone": backbone, **metrics(row)})
        write(self.results, rows, references, self.cfg.split, self.cfg.profile)
        print(f"study results in {self.results}/")
        return self.results


def _row(table: dict[str, Any], method: str) -> dict[str, Any]:
    return next(r for r in table["rows"] if r["method"] == method)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    Study(load_study(argv)).run()
    return 0
