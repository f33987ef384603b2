"""`csmri study` / `make study`: the α / loss-weight study of stage 2, on the quick setting.

    csmri study [key=value ...]          # keys of csmri/conf/study.yaml, e.g. alpha_targets=[0.01,1,100]

1. Makes sure the reproduce profile's stage 1, segmentation net and DAGAN exist (runs them like `csmri reproduce`
   would, in the same work dir, so a finished `make reproduce` is reused).
2. Runs Hydra multiruns of stage 2 (``csmri train -m``): one over ``loss.alpha_target`` (α such that α·L_pen equals
   it at the first step: small = the refinement dominates, large = the penalty switches it off) and one over the
   perceptual/adversarial balance ``loss.weights.vgg`` at the default α. Every point is a fixed folder, and a point
   whose run finished is not trained again (``skip_finished=true``), so the study resumes where it stopped; add
   ``hydra/launcher=slurm`` through ``train_overrides`` to run the points on a cluster. A third sweep compares
   perceptual backbones (``model.perceptual.weights``) at the default α and weights: ``autoencoder`` is VGG-19
   trained here as an autoencoder of the profile's fully-sampled training images (``experiment=vgg_autoencoder``,
   in ``<work_dir>/study/autoencoder``; no labels, no segmentation net), ``random`` the seeded random stand-in.
   A fourth runs the default point again with other ``seeds`` (initialisation, training masks and batch order):
   stage 2's run-to-run spread, which a setting's difference must beat before it means anything. The sweeps named
   in ``seeded_sweeps`` run every point with those seeds too (in ``<sweep>-seed<s>``), so that a setting is compared
   with the default over the same seeds.
3. Evaluates RecNet, DAGAN and every point's last checkpoint on the **validation** split (settings are chosen on
   it, never on the test split) with the same fixed per-slice masks, and writes ``results/study/``: ``table.md``,
   ``table.json`` and ``figure.png`` (SIS against PSNR, one point per run, λ at the end of training annotated,
   RecNet and DAGAN as reference points). Where a setting ran with more than one seed, ``table.md`` adds its mean and
   range over seeds and its difference from the default point paired by seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from csmri.app.reproduce import Pipeline, load_profile
from csmri.config import compose
from csmri.reporting import markdown_table, save_figure, write_strict_json

console = Console()
CSMRI = [sys.executable, "-m", "csmri"]
SETTING_SWEEPS = ("alpha", "weights", "backbone")  # the sweeps that vary a setting (``seed`` repeats one)


class Sweep(NamedTuple):
    """One Hydra multirun of stage 2: ``key`` over ``values``, at the profile's seed or at ``seed``."""

    key: str
    values: list[Any]
    kind: str  # alpha | weights | backbone | seed: what it varies (a seeded repeat keeps its sweep's kind)
    seed: int | None = None  # a seeded repeat's seed; None: the profile's


def load_study(argv: list[str]) -> DictConfig:
    """``csmri/conf/study.yaml`` with ``key=value`` overrides (a key not in the file is an error)."""
    from hydra.errors import HydraException

    try:
        return compose("study", argv)
    except HydraException as err:
        raise SystemExit(f"csmri study: bad override: {err}") from err


class Study:
    """The points of the study and their evaluation; see the module docstring."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.pipeline = Pipeline(load_profile([f"profile={cfg.profile}", *cfg.profile_overrides]))
        self.work = Path(self.pipeline.work) / "study"
        self.results = Path(cfg.results)

    # -- the sweeps ---------------------------------------------------------------------------------------------
    def sweeps(self) -> dict[str, Sweep]:
        """Sweep name (its folder under the study's work dir) -> :class:`Sweep`. The default point (default α, w_vgg
        and backbone) is run once per seed: at the profile's seed by :meth:`default_point_sweep`, at the other
        ``seeds`` by ``seed``; the other sweeps leave it out, and a sweep left without values (e.g.
        ``vgg_weights=[1.0]`` beside an α sweep with the default α) is dropped. A sweep named in ``seeded_sweeps``
        is repeated without its default value at every other seed, as ``<name>-seed<s>``."""
        unknown = sorted(set(self.cfg.seeded_sweeps) - set(SETTING_SWEEPS))
        if unknown:
            raise SystemExit(f"csmri study: seeded_sweeps: unknown sweep(s) {unknown}: {' | '.join(SETTING_SWEEPS)}")
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
        return [s for s in self.cfg.seeds if s != self.pipeline.p.seed]

    def default_point_sweep(self) -> str:
        """The first sweep that lists its default value: ``alpha``, else ``weights``, else ``backbone`` (which then
        runs stage 2's own backbone even if ``backbones`` leaves it out)."""
        if self.cfg.default_alpha_target in self.cfg.alpha_targets:
            return "alpha"
        return "weights" if self.cfg.default_vgg_weight in self.cfg.vgg_weights else "backbone"

    def points(self) -> list[dict[str, Any]]:
        """Every run of the study: its name, folder, sweep kind, settings and whether it is the default point (job
        folders are numbered in sweep order)."""
        field = {"loss.alpha_target": "alpha_target", "loss.weights.vgg": "vgg_weight", "seed": "seed"}
        defaults = {
            "alpha_target": self.cfg.default_alpha_target,
            "vgg_weight": self.cfg.default_vgg_weight,
            "seed": self.pipeline.p.seed,
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
    @property
    def autoencoder_dir(self) -> Path:
        """The profile's autoencoder stage (``experiment: vgg_autoencoder``), else the study's own run."""
        stage = self.pipeline.autoencoder_stage()
        return self.pipeline.stage_dir(stage) if stage else self.work / "autoencoder"

    def default_backbone(self) -> str:
        """Stage 2's own backbone: the profile's autoencoder where stage 2 uses it (offline), else ImageNet VGG-19
        (or the random stand-in it falls back to)."""
        return "autoencoder" if self.pipeline.uses_autoencoder() else "imagenet"

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
            return str(self.pipeline.autoencoder_weights(self.autoencoder_dir))
        if backbone in ("random", "imagenet") or Path(backbone).is_file():
            return backbone
        raise SystemExit(
            f"csmri study: unknown backbone {backbone!r}: autoencoder | random | imagenet | an existing weights file"
        )

    def autoencoder_command(self) -> list[str]:
        """Trains the autoencoder backbone on the profile's data (resumed from its last checkpoint if any)."""
        if self.pipeline.autoencoder_stage():
            return self.pipeline.train_command(self.pipeline.autoencoder_stage())
        overrides = [*self.pipeline.p.train_overrides, *self.cfg.autoencoder_overrides]
        return self.pipeline.training_command("vgg_autoencoder", self.autoencoder_dir, overrides)

    def ensure_prerequisites(self) -> None:
        """Stage 1, the segmentation nets, (as a reference) DAGAN of the profile and the autoencoder backbone if it is
        compared, each trained only if not finished."""
        for name in ("stage1", *self.pipeline.segnet_stages(), *(["dagan"] if "dagan" in self.cfg.references else [])):
            if self.pipeline.status(name) != "done":
                console.rule(f"study: {name} of profile {self.cfg.profile}")
                self.pipeline.run_stage(name).check_returncode()  # a stale run moved aside, the inputs recorded
        wanted = "autoencoder" in self.swept_backbones() or self.pipeline.uses_autoencoder()
        if wanted and not Path(self.backbone_weights("autoencoder")).is_file():
            console.rule("study: the autoencoder perceptual backbone (experiment=vgg_autoencoder)")
            subprocess.run(self.autoencoder_command(), check=True)

    def train_command(self, name: str) -> list[str]:
        sweep = self.sweeps()[name]
        stage2 = self.pipeline.train_command("stage2")
        replaced = (sweep.key, *(["seed"] if sweep.seed is not None else []))
        # after `-m csmri train`, without the run's folder, its resume point, the swept key and a seeded repeat's seed
        stage2 = [
            a for a in stage2[4:] if not a.startswith(("hydra.run.dir=", "ckpt_path=", *(k + "=" for k in replaced)))
        ]
        fixed = [
            f"loss.alpha_target={self.cfg.default_alpha_target}",
            f"loss.weights.vgg={self.cfg.default_vgg_weight}",
        ]
        fixed = [f for f in fixed if not f.startswith(sweep.key + "=")]
        return [
            *CSMRI,
            "train",
            "-m",
            *stage2,
            *fixed,
            *self.cfg.train_overrides,
            f"{sweep.key}={','.join(str(v) for v in sweep.values)}",
            *([f"seed={sweep.seed}"] if sweep.seed is not None else []),
            "skip_finished=true",
            f"hydra.sweep.dir={self.work / name}",
            "hydra.sweep.subdir=${hydra.job.num}",
        ]

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, name: str, method: str, ckpt: Path) -> dict[str, Any]:
        """``csmri eval`` of one checkpoint on the validation split; reused while newer than the checkpoint."""
        out = self.work / "eval" / name.replace("/", "_")
        table = out / "table.json"
        if not (table.is_file() and table.stat().st_mtime > ckpt.stat().st_mtime):
            args = [
                *self.pipeline.data_overrides(),
                f"hydra.run.dir={out}",
                f"split={self.cfg.split}",
                f"methods=[{method}]",
                f"reference={method}",
                f"{method}.ckpt={ckpt}",
                self.pipeline.segnet_override(),
                "figure.max_rows=2",
                "wandb.enabled=false",
            ]
            subprocess.run([*CSMRI, "eval", *args], check=True)
        rows = json.loads(table.read_text())["rows"]
        return next(r for r in rows if r["method"] == method)

    def run(self) -> Path:
        self.ensure_prerequisites()
        for name, sweep in self.sweeps().items():
            at = f" at seed {sweep.seed}" if sweep.seed is not None else ""
            console.rule(f"study: stage-2 sweep over {sweep.key}{at}")
            subprocess.run(self.train_command(name), check=True)
        stages = {"recnet": ("RecNet", "stage1"), "dagan": ("DAGAN", "dagan")}
        references = {
            stages[m][0]: self.evaluate(m, m, self.pipeline.eval_ckpt(stages[m][1])) for m in self.cfg.references
        }
        rows = []
        for point in self.points():
            ckpt = point["dir"] / "checkpoints" / "last.ckpt"
            row = self.evaluate(point["name"], "refinement", ckpt)
            checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
            lam = float(checkpoint["state_dict"]["refinement.gate"])
            backbone = checkpoint.get("perceptual_backbone", "n/a")
            rows.append({**point, "dir": str(point["dir"]), "lambda": lam, "backbone": backbone, **_metrics(row)})
        return self.write(rows, {k: _metrics(v) for k, v in references.items()})

    def write(self, rows: list[dict[str, Any]], references: dict[str, dict[str, Any]]) -> Path:
        self.results.mkdir(parents=True, exist_ok=True)
        header = ["run", "α target", "w_vgg", "backbone", "seed", "λ (end)", "PSNR (dB)", "SSIM", "SIS"]
        body = [
            [name, "", "", "", "", "", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", _fmt(r["sis"])]
            for name, r in references.items()
        ]
        for r in rows:
            body.append(
                [
                    r["name"],
                    f"{r['alpha_target']:g}",
                    f"{r['vgg_weight']:g}",
                    f"`{r['backbone']}`",
                    str(r["seed"]),
                    f"{r['lambda']:+.3f}",
                    f"{r['psnr']:.2f}",
                    f"{r['ssim']:.3f}",
                    _fmt(r["sis"]),
                ]
            )
        split = "validation split (`val`)" if self.cfg.split == "val" else f"`{self.cfg.split}` split"
        note = (
            f"\n\n{split} of profile `{self.cfg.profile}` (settings are chosen on it, never on the test "
            "split); every refinement run evaluated at its last checkpoint; same fixed per-slice masks for every run.\n"
        )
        settings = over_seeds(rows)
        if settings:
            note += "\n" + seeds_table(settings)
        (self.results / "table.md").write_text(markdown_table(header, body) + note)
        write_strict_json(self.results / "table.json", {"references": references, "runs": rows, "settings": settings})
        figure = sis_psnr_figure(rows, references, self.results / "figure.png")
        console.print(f"[bold green]study results in {self.results}/[/bold green] ({figure.name})")
        return self.results


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The settings (α target, w_vgg, backbone) that ran with more than one seed, the default point first: their
    seeds, mean / min / max of PSNR, SSIM and SIS, and, for the others, ``delta`` — seed -> their PSNR and SIS minus
    the default point's at that seed (paired by seed: the same initialisation, training masks and batch order).
    Empty if no setting ran twice. Runs without an SIS (structure absent) count for PSNR and SSIM only."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["alpha_target"], r["vgg_weight"], r["backbone"]), []).append(r)
    default = next((g for g in groups.values() if any(r.get("default") for r in g)), None)
    by_seed = {r["seed"]: r for r in default or []}
    out = []
    for (alpha, weight, backbone), runs in sorted(groups.items(), key=lambda kv: kv[1] is not default):
        if len(runs) < 2:
            continue
        stats: dict[str, Any] = {"alpha_target": alpha, "vgg_weight": weight, "backbone": backbone}
        stats |= {"default": runs is default, "seeds": [r["seed"] for r in runs]}
        for metric in ("psnr", "ssim", "sis"):
            values = [r[metric] for r in runs if r[metric] is not None]
            stats[metric] = (
                {"mean": sum(values) / len(values), "min": min(values), "max": max(values)} if values else None
            )
        if runs is not default:
            stats["delta"] = {
                r["seed"]: {m: _difference(r[m], by_seed[r["seed"]][m]) for m in ("psnr", "sis")}
                for r in runs
                if r["seed"] in by_seed
            }
        out.append(stats)
    return out


def _difference(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def seeds_table(settings: list[dict[str, Any]]) -> str:
    """``over_seeds``'s summary as markdown, with a sentence saying how to read it."""

    def spread(stat: dict[str, float] | None, digits: int) -> str:
        if stat is None:
            return "n/a"
        return f"{stat['mean']:.{digits}f} ({stat['min']:.{digits}f} to {stat['max']:.{digits}f})"

    def deltas(s: dict[str, Any], metric: str, digits: int) -> str:
        if s["default"]:
            return "—"
        if not s.get("delta"):
            return "n/a (no seed shared with the default point)"
        shown = [f"{d[metric]:+.{digits}f}" for d in s["delta"].values() if d[metric] is not None]
        return ", ".join(shown) or "n/a"

    header = ["setting", "seeds", "PSNR (dB): mean (min to max)", "SSIM: mean", "SIS: mean (min to max)"]
    header += ["ΔPSNR vs default, per seed", "ΔSIS vs default, per seed"]
    body = []
    for s in settings:
        label = f"α target {s['alpha_target']:g}, w_vgg {s['vgg_weight']:g}, `{s['backbone']}`"
        body.append(
            [
                label + (" (default)" if s["default"] else ""),
                ", ".join(str(seed) for seed in s["seeds"]),
                spread(s["psnr"], 2),
                "n/a" if s["ssim"] is None else f"{s['ssim']['mean']:.3f}",
                spread(s["sis"], 3),
                deltas(s, "psnr", 2),
                deltas(s, "sis", 3),
            ]
        )
    return (
        "Over seeds (each setting that ran with more than one seed; Δ: the setting minus the default point at the same "
        "seed). Read a difference against the default point's own range: one that keeps its sign at every seed and "
        "exceeds that range is unlikely to be seed noise; with a handful of seeds this is a reading, not a test.\n\n"
        + markdown_table(header, body)
        + "\n"
    )


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {"psnr": row.get("psnr_mean"), "ssim": row.get("ssim_mean"), "sis": row.get("sis")}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


_SWEEP_STYLES = {
    "alpha": ("o", "tab:blue", "refinement, α target swept", lambda p: f"α·L_pen={p['alpha_target']:g}"),
    "weights": ("s", "tab:orange", "refinement, w_vgg swept", lambda p: f"w_vgg={p['vgg_weight']:g}"),
    "backbone": ("D", "tab:green", "refinement, backbone swept", lambda p: str(p["backbone"])),
    "seed": ("v", "tab:purple", "refinement, default point, other seed", lambda p: f"seed={p['seed']}"),
}


def zoom_limits(
    rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], pad: tuple[float, float] = (0.25, 0.02)
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``((psnr_lo, psnr_hi), (sis_lo, sis_hi))`` around the runs and the first reference (RecNet), ``pad`` (dB, SIS)
    wider on each side; the other references (DAGAN) may fall outside. ``None`` without a point that has an SIS."""
    first = next(iter(references.values()), None)
    shown = [r for r in [*rows, *([first] if first else [])] if r.get("sis") is not None]
    if not shown:
        return None
    psnr, sis = [r["psnr"] for r in shown], [r["sis"] for r in shown]
    return (min(psnr) - pad[0], max(psnr) + pad[0]), (min(sis) - pad[1], max(sis) + pad[1])


def point_key(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str]]:
    """The zoomed panel's key: ``(number, row, text)`` per run with an SIS, numbered from 1 in sweep order (the
    order of ``_SWEEP_STYLES``), the text naming the run's setting (and a seeded repeat's seed) and its λ."""
    key = []
    for sweep, (_, _, _, tagger) in _SWEEP_STYLES.items():
        for p in (r for r in rows if r["sweep"] == sweep and r["sis"] is not None):
            repeat = p["name"].split("/")[0] not in _SWEEP_STYLES  # a seeded repeat (<sweep>-seed<s>): say its seed
            seed = f", seed={p['seed']}" if repeat else ""
            key.append((len(key) + 1, p, f"{tagger(p)}{seed}, λ={p['lambda']:+.3f}"))
    return key


def sis_psnr_figure(rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], path: Path) -> Path:
    """SIS against PSNR: one point per run (α, weight, backbone, seed sweeps), λ annotated; RecNet, DAGAN as references.

    Left: every point. Middle: zoomed to the runs and the first reference (RecNet) — a far-off reference (DAGAN)
    would otherwise squeeze the runs together — each run numbered. Right: the key of those numbers (setting and λ at
    the end), which stays legible however close the runs lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (overview, zoom, legend) = plt.subplots(1, 3, figsize=(15, 4.8), width_ratios=[1, 1, 0.55])
    key = point_key(rows)  # the runs plotted, numbered
    for sweep, (marker, colour, label, _) in _SWEEP_STYLES.items():
        points = [p for _, p, _ in key if p["sweep"] == sweep]
        for ax in (overview, zoom) if points else ():
            ax.scatter([p["psnr"] for p in points], [p["sis"] for p in points], marker=marker, c=colour, label=label)
    legend.axis("off")
    line = min(0.06, 1 / max(len(key), 1))  # the key's line height (axes fraction): long keys are set tighter
    for number, p, text in key:
        colour = _SWEEP_STYLES[p["sweep"]][1]
        zoom.annotate(
            str(number), (p["psnr"], p["sis"]), xytext=(4, 3), textcoords="offset points", fontsize=7, color=colour
        )
        legend.text(
            0,
            1 - line * (number - 1),
            f"{number}  {text}",
            transform=legend.transAxes,
            fontsize=min(8, 130 * line),
            color=colour,
            va="top",
        )
    for i, ((name, ref), marker) in enumerate(zip(references.items(), ("*", "X"), strict=False)):
        if ref["sis"] is not None:
            for ax in (overview, zoom) if i == 0 else (overview,):
                ax.scatter([ref["psnr"]], [ref["sis"]], marker=marker, s=140, c="black", label=name)
            if i == 0:
                zoom.annotate(name, (ref["psnr"], ref["sis"]), xytext=(8, -12), textcoords="offset points", fontsize=8)
    limits = zoom_limits(rows, references)
    if limits is not None:
        zoom.set_xlim(*limits[0])
        zoom.set_ylim(*limits[1])
    for ax, title in ((overview, "all runs and references"), (zoom, "the runs, zoomed (numbers: see the key)")):
        ax.set_xlabel("PSNR (dB)")
        ax.set_ylabel("SIS")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    legend.set_title("run (λ at the end of training)", fontsize=10, loc="left")
    overview.legend(fontsize=8, loc="best")
    fig.suptitle("Stage-2 study: SIS against PSNR (validation split)")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    cfg = load_study(argv)
    OmegaConf.set_struct(cfg, True)
    Study(cfg).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
