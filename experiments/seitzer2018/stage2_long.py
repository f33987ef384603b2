"""Does stage 2 turn towards the paper's effect with more steps? Its run continued far past the quick profile's 3
epochs, each epoch's checkpoint scored on the validation split, and the adversarial game epoch by epoch.

    # 1. continue the profile's stage 2 (a copy of its folder) with an inference-only checkpoint (~2 MB) every epoch;
    #    its arguments are the run's own (stage2/.hydra/overrides.yaml) less hydra.run.dir, max_epochs and ckpt_path
    cp -r outputs/reproduce/quick/stage2 outputs/long_stage2
    csmri train experiment=stage2 <the profile's data overrides> hydra.run.dir=outputs/long_stage2 \
        model.net.recon_ckpt=…/stage1/checkpoints/best.ckpt \
        model.net.perceptual.weights=…/perceptual/vgg19_autoencoder.pth \
        trainer.max_epochs=24 ckpt_path=outputs/long_stage2/checkpoints/last.ckpt \
        +callbacks.periodic._target_=csmri.lit.callbacks.InferenceModelCheckpoint \
        +callbacks.periodic.dirpath=outputs/long_stage2/periodic "+callbacks.periodic.filename='epoch{epoch:02d}'" \
        +callbacks.periodic.every_n_epochs=1 +callbacks.periodic.save_top_k=-1 +callbacks.periodic.monitor=null \
        +callbacks.periodic.auto_insert_metric_name=false
    # 2. each checkpoint on the validation split (never the test split), beside RecNet
    csmri eval split=val methods=[recnet,refinement] refinement.ckpt=outputs/long_stage2/periodic/epoch05.ckpt \
        recnet.ckpt=… segnet.ckpt=[…] hydra.run.dir=outputs/long_stage2/eval_epoch05      # and so on
    # 3. the summary and the figure
    python -m experiments.seitzer2018.stage2_long outputs/long_stage2 \\
        --figure experiments/seitzer2018/figures/stage2_long.png
    # 4. runs side by side (e.g. the paper's gate beside a freed one): SIS, PSNR, λ, the correction and D per epoch
    python -m experiments.seitzer2018.stage2_long --compare "gate x1=outputs/long_open/m1" \\
        "gate x100=outputs/long_open/m100" --figure experiments/seitzer2018/figures/stage2_long_open.png

Reads the run's CSV log (validation PSNR, R's, λ, the correction's size Σ|x̂ − R| / Σ|R| and D's mean scores of
real and refined validation images at each epoch's end; the generator's normalised terms and D's output on the
refined training images, averaged per epoch) and every ``eval_epochNN/table.json`` beside it.
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
VAL_GAME = ("correction", "d_real", "d_fake")  # val/<name> at each epoch's end


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
        **{f"val_{name}": metric_by_epoch(run_dir, f"val/{name}") for name in VAL_GAME},
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


def compare_figure(runs: dict[str, dict[str, object]], path: Path) -> Path:
    """Runs side by side, one line each per panel: validation SIS and PSNR of every scored checkpoint (RecNet
    dashed), λ and the correction's size, and D's mean score of real and of refined validation images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    sis, psnr, gate, game = axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, s), colour in zip(runs.items(), colours, strict=False):
        scores = s["checkpoints"]
        epochs = list(scores)
        sis.plot(epochs, [v["ref_sis"] for v in scores.values()], "o-", c=colour, ms=3, label=label)
        psnr.plot(list(s["val_psnr"]), list(s["val_psnr"].values()), "o-", c=colour, ms=3, label=label)
        gate.plot(
            list(s["lambda"]), [abs(v) for v in s["lambda"].values()], "s:", c=colour, ms=3, label=f"{label}: |λ|"
        )
        corr = s["val_correction"]
        gate.plot(list(corr), list(corr.values()), "o-", c=colour, ms=3, label=f"{label}: correction")
        for key, style, name in (("val_d_real", "^-", "real"), ("val_d_fake", "v:", "refined")):
            game.plot(list(s[key]), list(s[key].values()), style, c=colour, ms=3, label=f"{label}: D({name})")
    # SIS on its own scale (not 0-1): the runs and RecNet differ by hundredths
    first = next(iter(runs.values()))
    if first["checkpoints"]:
        sis.axhline(next(iter(first["checkpoints"].values()))["recnet_sis"], ls="--", c="gray", lw=1, label="RecNet")
    if first["val_psnr_recon"]:
        psnr.axhline(next(iter(first["val_psnr_recon"].values())), ls="--", c="gray", lw=1, label="RecNet (R)")
    for ax, ylabel, title in (
        (sis, "validation SIS", "SIS of each epoch's checkpoint"),
        (psnr, "validation PSNR (dB)", "PSNR"),
        (gate, "|λ|;  Σ|x̂ − R| / Σ|R|", "the gate and the correction it lets through"),
        (game, "D's mean score (validation)", "the adversarial game"),
    ):
        ax.legend(fontsize=7)
        ax.set_xlabel("epoch (0 = the first)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=110)


def _table(s: dict[str, object]) -> list[str]:
    header = ["epoch", "val PSNR", "λ", "correction", "D(real) / D(refined)", *TERMS, "refinement PSNR / SSIM / SIS"]
    lines = [" | ".join(header)]
    nan = float("nan")
    for epoch, psnr in s["val_psnr"].items():
        terms = " | ".join(f"{s[t].get(epoch, nan):.3f}" for t in TERMS)
        game = f"{s['val_d_real'].get(epoch, nan):.3f} / {s['val_d_fake'].get(epoch, nan):.3f}"
        scored = s["checkpoints"].get(epoch)
        ref = f"{scored['ref_psnr']:.2f} / {scored['ref_ssim']:.3f} / {scored['ref_sis']:.3f}" if scored else ""
        lam, corr = s["lambda"].get(epoch, nan), s["val_correction"].get(epoch, nan)
        lines.append(f"{epoch} | {psnr:.2f} | {lam:+.4f} | {corr:.3f} | {game} | {terms} | {ref}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="the continued stage-2 run, with eval_epochNN/ beside")
    parser.add_argument("--compare", nargs="+", metavar="LABEL=RUN_DIR", help="several runs side by side")
    parser.add_argument("--figure", type=Path, default=None, help="write the figure here")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.compare is None):
        parser.error("give one run folder or --compare LABEL=RUN_DIR ...")
    if args.compare:
        bad = [item for item in args.compare if "=" not in item]
        if bad:
            parser.error(f"--compare takes LABEL=RUN_DIR items, got {bad}")
        runs = {label: summary(Path(d)) for label, d in (item.split("=", 1) for item in args.compare)}
        for label, s in runs.items():
            print(f"## {label}", *_table(s), sep="\n")
        if args.figure:
            print(compare_figure(runs, args.figure))
        return 0
    s = summary(args.run_dir)
    print(*_table(s), sep="\n")
    if args.figure:
        print(figure(s, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
