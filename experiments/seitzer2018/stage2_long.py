"""Does stage 2 turn towards the paper's effect with more steps? Its run continued far past the quick profile's 3
epochs, every few epochs' checkpoint scored on the validation split, and the adversarial game epoch by epoch.

    # 1. continue the profile's stage 2 (a copy of its folder) with a checkpoint every 3 epochs
    cp -r outputs/reproduce/quick/stage2 outputs/long_stage2
    csmri train experiment=stage2 <the profile's data overrides> hydra.run.dir=outputs/long_stage2 \
        model.net.recon_ckpt=…/stage1/checkpoints/best.ckpt \
        model.net.perceptual.weights=…/perceptual/vgg19_autoencoder.pth \
        trainer.max_epochs=24 ckpt_path=outputs/long_stage2/checkpoints/last.ckpt \
        +callbacks.periodic._target_=lightning.pytorch.callbacks.ModelCheckpoint \
        +callbacks.periodic.dirpath=outputs/long_stage2/periodic "+callbacks.periodic.filename='epoch{epoch:02d}'" \
        +callbacks.periodic.every_n_epochs=3 +callbacks.periodic.save_top_k=-1
    # 2. each checkpoint on the validation split (never the test split), beside RecNet
    csmri eval split=val methods=[recnet,refinement] refinement.ckpt=outputs/long_stage2/periodic/epoch05.ckpt \
        recnet.ckpt=… segnet.ckpt=[…] hydra.run.dir=outputs/long_stage2/eval_epoch05      # and so on
    # 3. the summary and the figure
    python -m experiments.seitzer2018.stage2_long outputs/long_stage2 \\
        --figure experiments/seitzer2018/figures/stage2_long.png

Reads the run's CSV log (validation PSNR, R's, λ and the generator's normalised terms and D's output on the refined
images, averaged per epoch) and every ``eval_epochNN/table.json`` beside it.
Entry E9 of experiments/seitzer2018/results_history.md shows it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from csmri.app.compare import mean_by_epoch, metric_by_epoch
from csmri.reporting import save_figure

TERMS = ("adv_norm", "feat_norm", "vgg_norm", "pen_weighted", "d_fake")  # per-epoch means of train/<term>


def checkpoint_scores(run_dir: Path) -> dict[int, dict[str, float]]:
    """Epoch -> PSNR / SSIM / SIS of the refinement and of RecNet from ``run_dir/eval_epochNN/table.json``."""
    scores = {}
    for table in sorted(run_dir.glob("eval_epoch*/table.json")):
        epoch = int(re.fullmatch(r"eval_epoch(\d+)", table.parent.name).group(1))
        rows = {r["method"]: r for r in json.loads(table.read_text())["rows"]}
        scores[epoch] = {
            f"{prefix}_{field}": rows[method][key]
            for prefix, method in (("ref", "refinement"), ("recnet", "recnet"))
            for field, key in (("psnr", "psnr_mean"), ("ssim", "ssim_mean"), ("sis", "sis"))
        }
    return scores


def summary(run_dir: Path) -> dict[str, object]:
    return {
        "val_psnr": metric_by_epoch(run_dir, "val/psnr"),
        "val_psnr_recon": metric_by_epoch(run_dir, "val/psnr_recon"),
        "lambda": metric_by_epoch(run_dir, "train/lambda"),
        **{term: mean_by_epoch(run_dir, f"train/{term}") for term in TERMS},
        "checkpoints": checkpoint_scores(run_dir),
    }


def _label(ax, twin, xlabel: str, ylabel: str, title: str, legend_loc: str) -> None:
    """Axis labels, title, grid, and one legend for a panel and its twin axes."""
    handles = [h for axes in (ax, twin) for h in axes.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc=legend_loc)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def figure(s: dict[str, object], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.9))
    val, recon, scores = s["val_psnr"], s["val_psnr_recon"], s["checkpoints"]
    a.plot(list(val), list(val.values()), "o-", ms=3, label="refinement, val PSNR")
    a.axhline(next(iter(recon.values())), ls="--", c="tab:blue", lw=1, label="R, val PSNR")
    sis = a.twinx()
    if scores:
        sis.plot(
            list(scores), [v["ref_sis"] for v in scores.values()], "s-", c="tab:green", ms=4, label="refinement, SIS"
        )
        sis.axhline(next(iter(scores.values()))["recnet_sis"], ls="--", c="tab:green", lw=1, label="R, SIS")
    sis.set_ylabel("validation SIS", color="tab:green")
    sis.set_ylim(0, 1)
    _label(a, sis, "epoch (0 = the first)", "validation PSNR (dB)", "stage 2, validation split", "lower left")
    for term, label in (("adv_norm", "L_adv / M"), ("vgg_norm", "L_VGG / O")):
        b.plot(list(s[term]), list(s[term].values()), "o-", ms=3, label=f"{label} (epoch mean)")
    game = b.twinx()
    game.plot(list(s["d_fake"]), list(s["d_fake"].values()), "^-", c="tab:red", ms=3, label="D(x̂) (epoch mean)")
    game.plot(list(s["lambda"]), [abs(v) for v in s["lambda"].values()], "s:", c="black", ms=3, label="|λ| (epoch end)")
    game.set_ylabel("D(x̂), |λ|")
    game.set_ylim(0, 0.5)
    _label(b, game, "epoch", "normalised generator term (1 at step 1)", "the adversarial game", "upper left")
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the continued stage-2 run, with eval_epochNN/ folders beside")
    parser.add_argument("--figure", type=Path, default=None, help="write the two-panel figure here")
    args = parser.parse_args(argv)
    s = summary(args.run_dir)
    print("epoch | val PSNR | λ | " + " | ".join(TERMS) + " | refinement PSNR / SSIM / SIS (checkpoints)")
    for epoch, psnr in s["val_psnr"].items():
        terms = " | ".join(f"{s[t].get(epoch, float('nan')):.3f}" for t in TERMS)
        scored = s["checkpoints"].get(epoch)
        ref = f"{scored['ref_psnr']:.2f} / {scored['ref_ssim']:.3f} / {scored['ref_sis']:.3f}" if scored else ""
        print(f"{epoch} | {psnr:.2f} | {s['lambda'].get(epoch, float('nan')):+.3f} | {terms} | {ref}")
    if args.figure:
        print(figure(s, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
