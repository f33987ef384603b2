"""Does stage 2 still collapse when its PatchGAN scores the paper's patch grid? Stage-2 runs that differ only in the
discriminator's strides, side by side on the validation split.

The paper's PatchGAN has five stride-2 layers: on its 512² images it outputs 16 × 16 patch scores, each a cell of
1/16 of the image side. On the quick profile's 128² images the same network outputs 4 × 4; with three stride-2
layers (strides 2, 2, 2, 1, 1, 1; the same filters) it outputs the paper's 16 × 16 grid again.
Entry E9 of experiments/seitzer2018/results_history.md found that D wins the game within a few epochs at 128²;
this measures whether D's patch scale is why.

    # 1. one stage-2 run per discriminator (the profile's R, backbone, seed and data), a checkpoint every 3 epochs
    csmri train experiment=stage2 <the profile's data overrides> hydra.run.dir=outputs/dscale/strides_222111 \
        model.net.recon_ckpt=…/stage1/checkpoints/best.ckpt \
        model.net.perceptual.weights=…/perceptual/vgg19_autoencoder.pth \
        "model.net.discriminator.net.strides=[2,2,2,1,1,1]" trainer.max_epochs=6 \
        +callbacks.periodic._target_=lightning.pytorch.callbacks.ModelCheckpoint … +callbacks.periodic.every_n_epochs=3
    # 2. each checkpoint on the validation split (never the test split), beside RecNet
    csmri eval split=val methods=[recnet,refinement] refinement.ckpt=…/periodic/epoch05.ckpt … \
        hydra.run.dir=outputs/dscale/strides_222111/eval_epoch05
    # 3. the comparison
    python -m experiments.seitzer2018.discriminator_scale "4x4 (released strides)=outputs/dscale/strides_222221" \
        "16x16 (paper grid)=outputs/dscale/strides_222111" --figure docs/discriminator_scale.png

Each run folder is read as :mod:`experiments.seitzer2018.stage2_long` reads one (CSV log, ``eval_epochNN/table.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from csmri.reporting import save_figure
from experiments.seitzer2018.stage2_long import summary


def _run(text: str) -> tuple[str, Path]:
    name, sep, folder = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR, got {text!r}")
    if not Path(folder).is_dir():
        raise argparse.ArgumentTypeError(f"{folder} is not a folder")
    return name, Path(folder)


def table(runs: dict[str, dict]) -> str:
    """Markdown: per run, every scored checkpoint's PSNR / SSIM / SIS, λ, and the mean D(x̂) of its epoch."""
    lines = [
        "| discriminator | epoch | val PSNR (dB) | SSIM | SIS | λ (end of epoch) | D(x̂), epoch mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in runs.items():
        for epoch, scores in s["checkpoints"].items():
            lines.append(
                f"| {name} | {epoch} | {scores['ref_psnr']:.2f} | {scores['ref_ssim']:.3f} | {scores['ref_sis']:.3f} "
                f"| {s['lambda'].get(epoch, float('nan')):+.3f} | {s['d_fake'].get(epoch, float('nan')):.3f} |"
            )
    reference = next((next(iter(s["checkpoints"].values())) for s in runs.values() if s["checkpoints"]), None)
    if reference is not None:
        lines.append(
            f"| RecNet (R) | | {reference['recnet_psnr']:.2f} | {reference['recnet_ssim']:.3f} "
            f"| {reference['recnet_sis']:.3f} | | |"
        )
    return "\n".join(lines)


def figure(runs: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (psnr, sis, game) = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, (name, s) in enumerate(runs.items()):
        colour = f"C{i}"
        val = s["val_psnr"]
        psnr.plot(list(val), list(val.values()), "o-", c=colour, ms=3, label=name)
        scores = s["checkpoints"]
        sis.plot(list(scores), [v["ref_sis"] for v in scores.values()], "s-", c=colour, ms=4, label=name)
        game.plot(list(s["d_fake"]), list(s["d_fake"].values()), "^-", c=colour, ms=3, label=f"{name}: D(x̂)")
        game.plot(list(s["lambda"]), [abs(v) for v in s["lambda"].values()], ":", c=colour, label=f"{name}: |λ|")
    first = next(iter(runs.values()))
    if first["val_psnr_recon"]:
        psnr.axhline(next(iter(first["val_psnr_recon"].values())), ls="--", c="grey", lw=1, label="R")
    if first["checkpoints"]:
        sis.axhline(next(iter(first["checkpoints"].values()))["recnet_sis"], ls="--", c="grey", lw=1, label="R")
    sis.set_ylim(0, 1)
    game.set_ylim(0, 0.6)
    for ax, ylabel, title in (
        (psnr, "validation PSNR (dB)", "refinement, every epoch"),
        (sis, "validation SIS", "refinement, scored checkpoints"),
        (game, "D(x̂) (epoch mean), |λ| (epoch end)", "the adversarial game"),
    ):
        ax.set_xlabel("epoch (0 = the first)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=_run, help="NAME=RUN_DIR, one per discriminator (NAME labels it)")
    parser.add_argument("--figure", type=Path, default=None, help="write the three-panel figure here")
    args = parser.parse_args(argv)
    runs = {name: summary(folder) for name, folder in args.runs}
    print(table(runs))
    for name, s in runs.items():
        d_fake = ", ".join(f"{v:.3f}" for v in s["d_fake"].values())
        psnr = ", ".join(f"{v:.2f}" for v in s["val_psnr"].values())
        print(f"{name}: val PSNR per epoch {psnr}; D(x̂) per epoch {d_fake}")
    if args.figure:
        print(figure(runs, args.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
