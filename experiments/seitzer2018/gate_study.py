"""The gate's step bound: stage 2 at several ``model.gate_lr_multiplier`` values, scored on the validation split.

With lambda in V's Adam group, Adam moves lambda by about the learning rate per step, so after N steps
``|lambda| <= N * lr * gate_lr_multiplier``. Each point is one stage-2 run with the same settings and number of steps
apart from the multiplier, in a folder of ``<study>`` (here ``m<multiplier>/``), with ``csmri eval split=val`` of its
last checkpoint in ``eval_val/`` inside it:

    for m in 1 10 100 1000; do
      csmri train experiment=stage2 <data overrides> model.net.recon_ckpt=STAGE1.ckpt model.gate_lr_multiplier=$m \
          hydra.run.dir=STUDY/m$m
      csmri eval split=val methods=[zero_filled,recnet,refinement] recnet.ckpt=STAGE1.ckpt \
          refinement.ckpt=STUDY/m$m/checkpoints/last.ckpt segnet.ckpt=[...] hydra.run.dir=STUDY/m$m/eval_val
    done
    python -m experiments.seitzer2018.gate_study STUDY --figure experiments/seitzer2018/figures/gate_study.png

Prints a Markdown table (per point: lambda, the correction's size ``sum |x_hat - R| / sum |R|`` and D's mean scores at
the last validation epoch, the bound N * lr * m, validation PSNR/SSIM/SIS of the refinement and of RecNet) and draws
lambda, the correction's size and D's scores per epoch per multiplier.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from csmri.app.compare import metric_by_epoch
from csmri.reporting import save_figure

PER_EPOCH = ("val/lambda", "val/correction", "val/d_real", "val/d_fake", "val/psnr", "val/psnr_recon")


def eval_rows(run_dir: Path) -> dict[str, dict]:
    """Method -> its row of ``run_dir/eval_val/table.json`` (empty when the point was not evaluated)."""
    table = run_dir / "eval_val" / "table.json"
    return {r["method"]: r for r in json.loads(table.read_text())["rows"]} if table.is_file() else {}


def point(run_dir: Path) -> dict[str, object]:
    """One point: its multiplier, steps, learning rate, per-epoch metrics and evaluation rows."""
    info = json.loads((run_dir / "run_info.json").read_text())
    config = _config(run_dir)
    lr = float(re.search(r"^\s+lr: ([0-9.e+-]+)$", config, re.M).group(1))
    multiplier = float(re.search(r"^\s+gate_lr_multiplier: ([0-9.e+-]+)$", config, re.M).group(1))
    curves = {name: metric_by_epoch(run_dir, name) for name in PER_EPOCH}
    return {"dir": run_dir, "m": multiplier, "lr": lr, "steps": _steps(run_dir), "status": info.get("status"),
            **curves, "eval": eval_rows(run_dir)}  # fmt: skip


def _config(run_dir: Path) -> str:
    path = run_dir / ".hydra" / "config.yaml"
    return path.read_text() if path.is_file() else ""


def _steps(run_dir: Path) -> int:
    """V's optimiser steps: training batches, one V step each (the CSV's ``step`` counts batches; Lightning's
    ``global_step`` would count D's steps too)."""
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return max(int(row["step"]) for row in csv.DictReader(file)) + 1


def _last(curve: dict[int, float]) -> float:
    return curve[max(curve)] if curve else float("nan")


def final_scores(ckpt: Path, data_root: Path, batches: int = 3) -> dict[str, float]:
    """lambda, the correction's size and D's mean scores (D in eval mode) of a stage-2 checkpoint on the first
    ``batches`` validation batches of 8 slices (validation masks), for runs whose CSV log lacks ``val/d_fake``."""
    import torch

    from csmri.data import MRIDataModule
    from csmri.lit import RefinementModule
    from csmri.physics import complex_to_channels

    module = RefinementModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    acquisition = torch.load(ckpt, map_location="cpu", weights_only=True).get("csmri_acquisition") or {}
    dm = MRIDataModule(
        str(data_root), acceleration=acquisition.get("acceleration", 8), sample_n=acquisition.get("sample_n"),
        eval_batch_size=8, eval_seed=0,
    )  # fmt: skip
    dm.setup("fit")
    sums = {"d_real": 0.0, "d_fake": 0.0, "n": 0, "corr": 0.0, "base": 0.0}
    with torch.no_grad():
        for index, batch in enumerate(dm.val_dataloader()):
            if index == batches:
                break
            batch = dm.on_after_batch_transfer(batch, 0)  # no trainer: the validation masks
            out, extras = module.generate(batch)
            target = complex_to_channels(batch["target"])
            real, _ = module.discriminate(module._discriminator_input(target))
            fake, _ = module.discriminate(module._discriminator_input(out.float()))
            n = out.shape[0]
            sums["d_real"] += torch.sigmoid(real).mean().item() * n
            sums["d_fake"] += torch.sigmoid(fake).mean().item() * n
            sums["n"] += n
            sums["corr"] += (out.double() - extras["base"].double()).abs().sum().item()
            sums["base"] += extras["base"].double().abs().sum().item()
    return {
        "val/lambda": module.refinement.gate.item(),
        "val/correction": sums["corr"] / sums["base"],
        "val/d_real": sums["d_real"] / sums["n"],
        "val/d_fake": sums["d_fake"] / sums["n"],
    }


def table(points: list[dict[str, object]]) -> str:
    head = (
        "| multiplier m | V steps N | N·lr·m (≈ bound) | λ | correction | D(real) | D(fake) | val PSNR (dB) "
        "| val SSIM | val SIS | RecNet PSNR / SIS |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for p in points:
        ev, rec = p["eval"].get("refinement", {}), p["eval"].get("recnet", {})
        scored = (
            f"{ev['psnr_mean']:.2f} | {ev['ssim_mean']:.3f} | {ev.get('sis') or float('nan'):.3f}"
            if ev
            else f"{_last(p['val/psnr']):.2f} (trainer) | — | —"
        )
        recnet = f"{rec['psnr_mean']:.2f} / {rec.get('sis') or float('nan'):.3f}" if rec else "—"
        lines.append(
            f"| {p['m']:g} | {p['steps']} | {p['steps'] * p['lr'] * p['m']:.3g} | {_last(p['val/lambda']):+.4f} "
            f"| {_last(p['val/correction']):.4f} | {_last(p['val/d_real']):.3f} | {_last(p['val/d_fake']):.3f} "
            f"| {scored} | {recnet} |"
        )
    return "\n".join(lines)


def figure(points: list[dict[str, object]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.8))
    for p in points:
        label = f"m = {p['m']:g}"
        lam, corr = p["val/lambda"], p["val/correction"]
        (line,) = a.plot(list(lam), list(lam.values()), "o-", ms=4, label=label)
        b.plot(list(corr), list(corr.values()), "o-", ms=4, c=line.get_color(), label=label)
        for name, style in (("val/d_real", "o-"), ("val/d_fake", "^--")):
            curve = p[name]
            c.plot(list(curve), list(curve.values()), style, ms=4, c=line.get_color())
    b.set_yscale("symlog", linthresh=1e-4)
    c.plot([], [], "ko-", label="D(real)")
    c.plot([], [], "k^--", label="D(fake)")
    titles = ("λ after each epoch", "correction Σ|x̂ − R| / Σ|R|", "D's mean scores")
    for ax, title in zip((a, b, c), titles, strict=True):
        ax.set_xlabel("epoch (0 = the first)")
        ax.set_title(f"{title} (validation split)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the folder holding one m<multiplier>/ run per point")
    parser.add_argument("--figure", type=Path, default=None, help="write the three-panel figure here")
    parser.add_argument(
        "--data-root", type=Path, default=None,
        help="score each last.ckpt's D on the validation split here when its CSV log has no val/d_fake",
    )  # fmt: skip
    args = parser.parse_args(argv)
    runs = [d for d in args.study.iterdir() if "gate_lr_multiplier" in _config(d) and (d / "csv").is_dir()]
    points = sorted((point(d) for d in runs), key=lambda p: p["m"])
    for p in points:
        if not p["val/d_fake"] and args.data_root is not None:
            scores = final_scores(p["dir"] / "checkpoints" / "last.ckpt", args.data_root)
            print(f"m = {p['m']:g}, last.ckpt rescored: {scores}")
            p["val/d_fake"] = {max(p["val/lambda"]): scores["val/d_fake"]}
    print(table(points))
    for p in points:
        per_epoch = " ; ".join(
            f"{e}: λ {p['val/lambda'][e]:+.4f}, corr {p['val/correction'][e]:.4f}, D {p['val/d_real'][e]:.3f}/"
            f"{p['val/d_fake'].get(e, float('nan')):.3f}, PSNR {p['val/psnr'][e]:.2f}"
            for e in p["val/lambda"]
        )
        print(f"m = {p['m']:g}: {per_epoch}")
    if args.figure:
        print(figure(points, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
