"""DLMRI study: PSNR/SSIM gain over zero-filling on phantom slices, per mask and DLMRI setting.

    python -m experiments.seitzer2018.dlmri_study --size 128 --slices 4 --out results/dlmri_study

Masks (same acceleration): the paper's 1-D variable-density Gaussian Cartesian line mask
(:func:`csmri.physics.mask.gaussian_line_mask`) and a 2-D variable-density random point mask (the setting DLMRI
was published with; :func:`variable_density_points_mask`). Settings: DLMRI defaults, the fast setting, and knobs
(outer iterations, overlap stride 1 with fewer K-SVD iterations, ν-weighted DC when ``--noise-std > 0``). Each
slice is the middle slice of a patient of the default 37-patient phantom's ``--split`` (default ``val``: settings
are chosen there, never on the test split; a RecNet trained on the phantom never saw it), magnitude-normalised
to peak 1; metrics on magnitudes as in ``csmri eval``. Writes ``table.md``, ``results.json`` and ``gain.png``
into ``--out``. Not a test: default DLMRI costs ~30 s of one core per 128² slice.
``--recnet-ckpt PATH`` adds a trained csmri checkpoint on the same slices and masks (meaningful for the mask it was
trained with: the 1-D Gaussian mask with ``--sample-n`` centre lines as in its training run).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import torch

from csmri.baselines import DLMRI, FAST_SETTINGS, nu_from_noise
from csmri.data.layout import split_indices
from csmri.data.sources.phantom import generate_patient
from csmri.metrics.image import magnitude, psnr, ssim
from csmri.physics import fft2c, ifft2c
from csmri.physics.mask import gaussian_line_mask


def variable_density_points_mask(
    batch_size: int,
    shape: tuple[int, int],
    acceleration: float,
    power: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """2-D variable-density random points, float32 ``(B, H, W)``: exactly ``H W / acc`` k-space samples.

    Density ``(1 - r)^power`` in the normalised radius ``r = |k| / |k|_max`` (centred k-space), plus a fully
    sampled centre disc of 1/4 of the budget; the rest drawn without replacement from the density.
    """
    height, width = shape
    ky = (torch.arange(height) - height // 2) / (height / 2)
    kx = (torch.arange(width) - width // 2) / (width / 2)
    radius = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / 2**0.5
    density = (1 - radius).clamp_min(0) ** power + 1e-3
    budget = int(height * width / acceleration)
    order = torch.argsort(radius.reshape(-1), stable=True)
    centre = order[: budget // 4]
    masks = torch.zeros(batch_size, height * width)
    for b in range(batch_size):
        weights = density.reshape(-1).clone()
        weights[centre] = 0
        drawn = torch.multinomial(weights, budget - centre.numel(), replacement=False, generator=generator)
        masks[b, centre] = 1
        masks[b, drawn] = 1
    return masks.reshape(batch_size, height, width)


def phantom_slices(n: int, size: int, split: str = "val", patients: int = 37, seed: int = 0) -> torch.Tensor:
    """Middle slice of the first ``n`` ``split`` patients of the ``patients``-patient phantom with ``seed``,
    complex64 ``(n, size, size)``, peak magnitude 1."""
    chosen = split_indices(patients, seed)[split]
    if n > len(chosen):
        raise SystemExit(f"--slices {n}: the {patients}-patient phantom has {len(chosen)} {split} patients")
    images = []
    for index in chosen[:n]:
        volume = generate_patient(index, size=size, n_slices=20)
        image = torch.from_numpy(volume.image[10])
        images.append(image / image.abs().max())
    return torch.stack(images)


def simulate(target: torch.Tensor, mask: torch.Tensor, noise_std: float, seed: int) -> dict[str, Any]:
    kspace = fft2c(target) * mask
    if noise_std > 0:
        g = torch.Generator().manual_seed(seed)
        kspace = kspace + torch.randn(kspace.shape, dtype=torch.complex64, generator=g) * (noise_std * 2**0.5) * mask
    return {"target": target, "mask": mask, "kspace": kspace, "zero_filled": ifft2c(kspace)}


def settings(noise_std: float, shape: tuple[int, int], only: list[str] | None) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {
        "default (stride 1, K-SVD 20, 15 it)": {},
        "fast (stride 2, K-SVD 5, 15 it)": dict(FAST_SETTINGS),
        "fast, 5 it": FAST_SETTINGS | {"outer_iters": 5},
        "fast, 30 it": FAST_SETTINGS | {"outer_iters": 30},
        "stride 1, K-SVD 5, 15 it": {"ksvd_iters": 5},
        "fast, thresholds x2": FAST_SETTINGS | {"error_threshold_scale": 2},
    }
    if noise_std > 0:
        nu = nu_from_noise(noise_std, shape)
        configs[f"fast, nu=140/sigma={nu:.3g}"] = FAST_SETTINGS | {"nu": nu}
    if only:
        configs = {k: v for k, v in configs.items() if any(o in k for o in only)}
    return configs


def _cpu_seconds() -> float:
    """CPU time of this process and its finished (joined) children, e.g. the DLMRI pool workers."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def evaluate(recon: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    image, truth = magnitude(recon), magnitude(target)
    return psnr(image, truth).tolist(), ssim(image, truth).tolist()


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = sorted({r["mask"] for r in rows})
    names = list(dict.fromkeys(r["setting"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(masks)
    for m, mask in enumerate(masks):
        gains = [next((r["psnr_gain"] for r in rows if r["mask"] == mask and r["setting"] == n), 0.0) for n in names]
        ax.bar([i + m * width for i in range(len(names))], gains, width, label=mask)
    ax.set_xticks([i + width * (len(masks) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("PSNR gain over zero-filled (dB)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--split", choices=["train", "val", "test"], default="val")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--acceleration", type=float, default=8.0)
    parser.add_argument("--noise-std", type=float, default=0.0, help="k-space noise std per real component")
    parser.add_argument("--workers", type=int, default=0, help="DLMRI process pool size (0 = all cores)")
    parser.add_argument("--masks", nargs="+", default=["1d-gaussian", "2d-vd-random"])
    parser.add_argument("--only", nargs="*", help="run only settings whose name contains one of these")
    parser.add_argument("--recnet-ckpt", type=str, default=None)
    parser.add_argument(
        "--sample-n", type=int, default=None, help="always-sampled centre lines of the 1-D mask (default: max(2, N/64))"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    target = phantom_slices(args.slices, args.size, args.split)
    shape = (args.size, args.size)
    generator = torch.Generator().manual_seed(0)
    make_mask = {
        "1d-gaussian": lambda: gaussian_line_mask(
            args.slices, shape, args.acceleration, sample_n=args.sample_n, generator=generator
        ),
        "2d-vd-random": lambda: variable_density_points_mask(
            args.slices, shape, args.acceleration, generator=generator
        ),
    }
    methods: dict[str, Any] = {}
    if args.recnet_ckpt:
        from csmri.eval.methods import CheckpointMethod

        methods["recnet"] = CheckpointMethod(args.recnet_ckpt, "recnet")
    rows: list[dict[str, Any]] = []
    for mask_name in args.masks:
        batch = simulate(target, make_mask[mask_name](), args.noise_std, seed=1)
        zf_psnr, zf_ssim = evaluate(batch["zero_filled"], target)
        print(f"[{mask_name}] zero-filled PSNR {sum(zf_psnr) / len(zf_psnr):.2f} dB", flush=True)
        runs = {
            name: DLMRI(progress=False, workers=args.workers, **cfg)
            for name, cfg in settings(args.noise_std, shape, args.only).items()
        }
        runs.update(methods)
        for name, method in runs.items():
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            recon = method.reconstruct(batch)
            if isinstance(method, DLMRI):
                method.close()  # joins the workers, so their CPU time is counted
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
            p, s = evaluate(recon, target)
            row = {
                "mask": mask_name,
                "setting": name,
                "zf_psnr": sum(zf_psnr) / len(p),
                "psnr": sum(p) / len(p),
                "psnr_gain": sum(a - b for a, b in zip(p, zf_psnr, strict=True)) / len(p),
                "zf_ssim": sum(zf_ssim) / len(s),
                "ssim": sum(s) / len(s),
                "ssim_gain": sum(a - b for a, b in zip(s, zf_ssim, strict=True)) / len(s),
                "seconds_per_slice": seconds / len(p),
                "cpu_seconds_per_slice": cpu / len(p),
            }
            rows.append(row)
            print(
                f"  {name:40s} PSNR {row['psnr']:.2f} (+{row['psnr_gain']:.2f}) SSIM {row['ssim']:.3f} "
                f"(+{row['ssim_gain']:.3f}) {row['seconds_per_slice']:.1f} s/slice wall, "
                f"{row['cpu_seconds_per_slice']:.1f} CPU s/slice",
                flush=True,
            )
            write(rows, args)
    plot(rows, args.out / "gain.png")


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    header = (
        f"DLMRI on {args.slices} phantom slices {args.size}², {args.acceleration:g}x, noise_std={args.noise_std:g} "
        "(mean over slices; wall time with the process pool on a shared machine, and CPU time)\n\n"
        "| mask | setting | ZF PSNR | PSNR | ΔPSNR | ZF SSIM | SSIM | ΔSSIM | wall s/slice | CPU s/slice |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['mask']} | {r['setting']} | {r['zf_psnr']:.2f} | {r['psnr']:.2f} | {r['psnr_gain']:+.2f} | "
        f"{r['zf_ssim']:.3f} | {r['ssim']:.3f} | {r['ssim_gain']:+.3f} | "
        f"{r['seconds_per_slice']:.1f} | {r['cpu_seconds_per_slice']:.1f} |"
        for r in rows
    ]
    (args.out / "table.md").write_text(header + "\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
