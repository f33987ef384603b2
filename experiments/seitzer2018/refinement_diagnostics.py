"""Is stage 2's refinement learning a correction? V's output against R's residual error, per checkpoint.

    python -m experiments.seitzer2018.refinement_diagnostics CKPT [CKPT ...] --data DIR [--split val] [--batches 24]

For each stage-2 checkpoint, on the fixed evaluation masks of ``--split`` (default ``val``: never tune on test):
λ, mean |x_V| (V's output, in its (-1, 1) range) and the mean per-slice cosine of ``x_V`` with R and with R's
residual ``x - R`` (real and imaginary channels together; a cosine does not depend on the per-image scale that
:class:`csmri.models.refinement.GatedRefinement` applies), the same cosine for the gated contribution ``λ x_V``
(negative ``λ`` flips it), and the MSE-best gate for V's present output. A refinement that corrects R has a clearly
positive gated cosine; one near 0 adds output unrelated to R's error, which costs PSNR once ``λ`` opens.
Entry E3 of experiments/seitzer2018/results_history.md used this script on the quick profile's runs.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from csmri.data import MRIDataModule
from csmri.eval.methods import load_module
from csmri.models.refinement import GatedRefinement
from csmri.physics import complex_to_channels


def alignment(
    x_v: torch.Tensor, base: torch.Tensor, residual: torch.Tensor, gate: float = 1.0, scale: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-slice figures of ``(B, C, H, W)`` tensors -> ``(B,)``: ``cos(x_V, R)``, ``cos(x_V, x - R)``, ``mean |x_V|``,
    the cosine of the gated contribution ``gate * x_V`` with ``x - R`` (V's output counts with the gate's sign), and
    ``best_gate``: the gate that would minimise ``|x - (R + scale * gate * x_V)|^2`` for V's present output
    (``<x_V, x - R> / (scale |x_V|^2)``, ``scale`` the per-image ``(B,)`` factor of GatedRefinement; default 1)."""
    flat, res = x_v.flatten(1), residual.flatten(1)
    scale = torch.ones(flat.shape[0]) if scale is None else scale.reshape(-1)
    cos_residual = F.cosine_similarity(flat, res)
    sign = 1.0 if gate >= 0 else -1.0
    return {
        "cos_v_R": F.cosine_similarity(flat, base.flatten(1)),
        "cos_v_residual": cos_residual,
        "cos_gated_residual": sign * cos_residual,
        "mean_abs_v": flat.abs().mean(1),
        "best_gate": (flat * res).sum(1) / (scale * flat.pow(2).sum(1)).clamp_min(1e-12),
    }


@torch.inference_mode()
def diagnose(ckpt: str, datamodule: MRIDataModule, split: str = "val", batches: int | None = None) -> dict[str, float]:
    module = load_module(ckpt).eval()
    gate = float(module.refinement.gate)
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(loader):
        if batches is not None and i >= batches:
            break
        batch = datamodule.on_after_batch_transfer(batch, 0)
        _, extras = module.generate(batch)  # R(x_u) and V's output before the gate
        scale = GatedRefinement.image_scale(extras["base"])
        base, x_v = extras["base"][:, : extras["x_v"].shape[1]], extras["x_v"]  # real_only: V refines channel 0
        residual = complex_to_channels(batch["target"])[:, : x_v.shape[1]] - base
        for key, values in alignment(x_v, base, residual, gate, scale).items():
            sums[key] = sums.get(key, 0.0) + float(values.sum())
        n += base.shape[0]
    return {"lambda": gate, **{k: v / max(n, 1) for k, v in sums.items()}, "slices": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpts", nargs="+", help="stage-2 checkpoints")
    parser.add_argument("--data", required=True, help="prepared dataset root (the run's data.root)")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--batches", type=int, default=None, help="at most this many batches of 5 (default: all)")
    parser.add_argument("--acceleration", type=float, default=8.0)
    parser.add_argument("--sample-n", type=int, default=8)
    args = parser.parse_args(argv)
    datamodule = MRIDataModule(args.data, batch_size=5, acceleration=args.acceleration, sample_n=args.sample_n)
    datamodule.setup("validate" if args.split == "val" else "test")
    for ckpt in args.ckpts:
        print(json.dumps({"ckpt": ckpt, **diagnose(ckpt, datamodule, args.split, args.batches)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
