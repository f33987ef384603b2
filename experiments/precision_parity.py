"""Accuracy parity of mixed precision: stage 1 trained for the same steps in ``32-true`` and in ``bf16-mixed`` (what
``trainer.precision=auto`` picks on AMX CPUs and bf16 GPUs), same seed, data, masks and batch order. Needs native
bf16 (``avx512_bf16``/``amx_bf16`` CPU flags or an Ampere+ GPU).

    python -m experiments.precision_parity [--size 128] [--epochs 4] [--patients 12] [--json PATH]

Prints val PSNR/SSIM of both runs, their difference and the wall time of each (the target: within 0.2 dB).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from csmri.app.train import train
from csmri.config import compose
from experiments.bench import phantom


def run(precision: str, root: Path, epochs: int, out: Path) -> dict:
    overrides = [
        "experiment=stage1",
        f"data.root={root}",
        "data.batch_size=10",
        f"trainer.max_epochs={epochs}",
        f"trainer.precision={precision}",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"paths.output_dir={out}",
    ]
    start = time.perf_counter()
    train(compose("train", overrides))
    seconds = time.perf_counter() - start
    info = json.loads((out / "run_info.json").read_text())
    metrics = info["final_metrics"]
    return {
        "precision": info["precision"],
        "val_psnr": metrics["val/psnr"],
        "val_ssim": metrics["val/ssim"],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--cache", default=".bench")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    root = phantom(args.size, Path(args.cache))
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(p, root, args.epochs, Path(tmp) / p) for p in ("32-true", "bf16-mixed")]
    result = {
        "size": args.size,
        "epochs": args.epochs,
        "runs": runs,
        "delta_psnr": runs[1]["val_psnr"] - runs[0]["val_psnr"],
    }
    table = Table(title=f"Stage 1, {args.size}², {args.epochs} epochs, same seed/data/masks")
    for column in ("precision", "val PSNR (dB)", "val SSIM", "time (s)"):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(r["precision"], f"{r['val_psnr']:.3f}", f"{r['val_ssim']:.4f}", f"{r['seconds']:.0f}")
    console = Console()
    console.print(table)
    console.print(f"bf16-mixed - fp32: {result['delta_psnr']:+.3f} dB val PSNR")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
