"""`make bench`: training throughput of csmri's real path against a naive eager fp32 reference, in one run.

    python -m experiments.bench [--sizes 128 256] [--stage2-sizes 128] [--steps 10] [--device cuda] [--json PATH]

For each measurement both sides train the same networks on the same phantom slices in the same process:

- **csmri**: the DataModule, LightningModule and Trainer exactly as ``csmri train experiment=stage1|stage2`` builds
  them (composed config, default precision = ``trainer.precision=auto``, channels-last, masks drawn per batch in
  ``on_after_batch_transfer``); throughput = slices between the ends of the timed batches / wall time, so data
  loading, mask drawing and the optimiser steps are all counted.
- **naive**: the same network classes in a plain eager loop, fp32, NCHW, masks drawn and applied per step.

Reported: slices/s of both and their ratio; the share of a step spent drawing masks and undersampling; a GAN step's
perceptual term with the targets' features computed and cached, in fp32 and bf16 (:func:`bench_vgg_terms`); peak memory
(CUDA: max allocated per measurement; CPU: the process's peak RSS so far, cumulative); DLMRI seconds per slice,
serial and pooled; the precision used. Absolute times on a shared machine are noise: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from csmri.app.train import build_module, build_trainer
from csmri.config import compose
from csmri.data.sources.phantom import write_phantom_dataset
from csmri.lit.precision import resolve_feature_precision, resolve_precision
from csmri.models import PatchDiscriminator, RecNet, UNet, VGGFeatures
from csmri.physics import MaskSampler, complex_to_channels, undersample, zero_filled
from csmri.physics.mask import gaussian_line_mask

STAGE1_BATCH, STAGE2_BATCH = 20, 5  # the paper's batch sizes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def phantom(size: int, cache: Path) -> Path:
    """A small phantom dataset (8 patients x 20 slices) at ``size``, written once under ``cache``."""
    root = cache / f"phantom_{size}"
    if not (root / "meta.json").is_file():
        write_phantom_dataset(root, n_patients=8, size=size, n_slices=20, seed=0, progress=False)
    return root


def training_slices(root: Path, n: int, device: torch.device) -> torch.Tensor:
    """``n`` fully-sampled training slices, complex ``(n, H, W)`` (max magnitude 1), cycled if the split is short."""
    from csmri.data.dataset import SliceDataset

    dataset = SliceDataset(root, "train")
    return torch.stack([dataset[i % len(dataset)]["target"] for i in range(n)]).to(device)


# -- csmri's real training path ---------------------------------------------------------------------------------
class _BatchClock(L.Callback):
    """Wall-clock time at the end of every training batch; stops training after ``batches`` batches (``max_steps``
    would count both optimisers of the GAN stages)."""

    def __init__(self, batches: int) -> None:
        self.batches, self.ends = batches, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.ends.append(time.perf_counter())
        if len(self.ends) >= self.batches:
            trainer.should_stop = True


def csmri_path(experiment: str, root: Path, batch: int, steps: int, device: torch.device, *extra: str) -> dict:
    """Throughput of ``csmri train experiment=...`` (composed config, default precision) over ``steps`` batches."""
    warmup = 3
    overrides = [
        f"experiment={experiment}",
        f"data.root={root}",
        f"data.batch_size={batch}",
        "data.acceleration=8",
        "logger=none",
        f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
        "trainer.max_epochs=1000",
        "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        "+trainer.enable_checkpointing=false",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        *extra,
    ]
    with tempfile.TemporaryDirectory() as out:
        cfg = compose("train", [*overrides, f"paths.output_dir={out}"])
        datamodule = instantiate(cfg.data)
        module = build_module(cfg, datamodule)
        clock = _BatchClock(warmup + steps)
        trainer = build_trainer(cfg, [clock], [])
        _reset_peak(device)
        trainer.fit(module, datamodule=datamodule)
    timed = clock.ends[warmup - 1 :]
    seconds = (timed[-1] - timed[0]) / (len(timed) - 1)
    return {"slices_per_s": batch / seconds, "step_ms": 1e3 * seconds, "precision": str(trainer.precision)}


# -- naive eager fp32 references ----------------------------------------------------------------------------------
def _throughput(step, steps: int, batch: int, device: torch.device, warmup: int = 3) -> dict:
    for i in range(warmup):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"slices_per_s": batch / seconds, "step_ms": 1e3 * seconds}


def _masked(images: torch.Tensor, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    start = (step * batch) % (len(images) - batch + 1)
    target = images[start : start + batch]
    g = torch.Generator(device=images.device).manual_seed(step)
    mask = gaussian_line_mask(batch, tuple(target.shape[-2:]), 8, generator=g, device=images.device)
    kspace = undersample(target, mask)
    return target, kspace, mask


def naive_stage1(images: torch.Tensor, batch: int, steps: int) -> dict:
    """RecNet + MSE + Adam in a plain fp32 loop (masks drawn per step, as in training)."""
    net = RecNet().to(images.device)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(i: int) -> None:
        target, kspace, mask = _masked(images, i, batch)
        output = net(complex_to_channels(zero_filled(kspace)), kspace, mask)
        loss = F.mse_loss(output, complex_to_channels(target))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return _throughput(step, steps, batch, images.device)


def naive_stage2(images: torch.Tensor, batch: int, steps: int) -> dict:
    """Frozen R, refinement U-Net V with its gate, PatchGAN D and a VGG-19 (relu5_4) in a plain fp32 loop:
    one D step and one V step per batch with the paper's four loss terms."""
    device = images.device
    recon = RecNet().to(device).eval().requires_grad_(False)
    refiner, gate = UNet().to(device), torch.zeros((), device=device, requires_grad=True)
    disc = PatchDiscriminator().to(device)
    vgg = VGGFeatures(weights="random").to(device)
    opt_v = torch.optim.Adam([*refiner.parameters(), gate], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits

    def step(i: int) -> None:
        target, kspace, mask = _masked(images, i, batch)
        with torch.no_grad():
            base = recon(complex_to_channels(zero_filled(kspace)), kspace, mask)
        scale = base.abs().amax(dim=(1, 2, 3), keepdim=True)
        x_v = refiner(base / scale)
        refined = base + scale * gate * x_v
        real, fake = target.abs().unsqueeze(1), refined.norm(dim=1, keepdim=True)
        real_logits, real_feats = disc(real)
        fake_logits, _ = disc(fake.detach())
        loss_d = bce(real_logits, torch.full_like(real_logits, 0.9)) + bce(fake_logits, torch.zeros_like(fake_logits))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        fake_logits, fake_feats = disc(fake)
        adv = bce(fake_logits, torch.ones_like(fake_logits))
        feat = sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats, strict=True))
        with torch.no_grad():
            vgg_real = vgg(real[:, 0])
        loss_v = 0.5 * (adv + feat) + F.mse_loss(vgg(fake[:, 0]), vgg_real) + 0.1 * x_v.abs().mean()
        opt_v.zero_grad()
        loss_v.backward()
        opt_v.step()

    return _throughput(step, steps, batch, device)


def mask_share(images: torch.Tensor, batch: int, step_ms: float) -> dict:
    """Time of ``MaskSampler.simulate`` (mask drawing + FFT + masking + zero-filling) for one training batch."""
    sampler = MaskSampler(acceleration=8, seed=0)
    target = images[:batch]
    r = _throughput(lambda i: sampler.simulate({"target": target}, train=True, step=i), 20, batch, images.device)
    return {"sim_ms": r["step_ms"], "sim_share": r["step_ms"] / step_ms}


def _stage1_checkpoint(path: Path) -> Path:
    """A stage-1 checkpoint of the default RecNet (random weights): what stage 2 loads as R."""
    net_cfg = {"_target_": "csmri.models.RecNet"}
    state = {f"net.{k}": v for k, v in RecNet().state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"net": net_cfg}, "csmri_module": "reconstruction"}, path)
    return path


def bench_dlmri(images: torch.Tensor, workers: int) -> dict:
    """DLMRI (default settings) on ``workers`` slices: seconds per slice serially and through the process pool."""
    from csmri.baselines.dlmri import DLMRI

    n = max(2, workers)
    target = images[:n].cpu()
    g = torch.Generator().manual_seed(0)
    mask = gaussian_line_mask(n, tuple(target.shape[-2:]), 8, generator=g)
    kspace = undersample(target, mask)
    batch = {"kspace": kspace, "mask": mask, "zero_filled": zero_filled(kspace), "target": target}
    timings = {}
    for name, w in (("serial", 1), ("pooled", workers)):
        method = DLMRI(workers=w, progress=False)
        start = time.perf_counter()
        out = method.reconstruct(batch)
        timings[name] = (time.perf_counter() - start) / n
        timings.setdefault("outputs", []).append(out)
        method.close()
    same = torch.equal(*timings.pop("outputs"))
    return {"serial_s": timings["serial"], "pooled_s": timings["pooled"], "workers": workers, "identical": same}


def _perceptual_step(loss, pred: torch.Tensor, target: torch.Tensor, keys: list[str] | None, i: int) -> None:
    pred.grad = None
    loss(pred, target, keys=keys).backward()


def bench_vgg_terms(root: Path, device: torch.device, steps: int) -> list[dict]:
    """A GAN step's perceptual term (loss forward + backward to the prediction), channels-last like the modules,
    with the targets' features computed every step (no keys: the first epoch) and read from the per-slice cache (a
    later epoch), both in fp32, and cached with the VGG in bf16 where bf16 is native (``model.vgg_precision=auto``):
    DAGAN's VGG-16 pool4 at 244² (batch 25) and stage 2's VGG-19 relu5_4 (batch 5). ``ratio``: computed in fp32 /
    the default (cached; in bf16 where bf16 is native)."""
    from csmri.losses.dagan import DAGANVGGFeatures
    from csmri.losses.perceptual import PerceptualLoss

    modes = [("computed", False, False), ("cached", True, False)]
    if resolve_feature_precision("auto", device.type):  # bf16 is native here
        modes.append(("cached_bf16", True, True))
    rows = []
    for name, extractor, batch in (
        ("DAGAN VGG-16 pool4 at 244²", DAGANVGGFeatures("random", allow_random_fallback=True), 25),
        ("stage 2 VGG-19 relu5_4", VGGFeatures("random", allow_random_fallback=True), STAGE2_BATCH),
    ):
        extractor = extractor.to(device, memory_format=torch.channels_last)
        target = training_slices(root, batch, device).abs()
        keys = [f"slice{i}" for i in range(batch)]
        pred = (target + 0.05 * torch.randn_like(target)).requires_grad_(True)

        row: dict[str, Any] = {"name": name, "batch": batch}
        for mode, cached, bf16 in modes:
            loss = PerceptualLoss(extractor, bf16=bf16)  # a fresh cache per mode (filled by the warm-up step)
            step = partial(_perceptual_step, loss, pred, target, keys if cached else None)
            row[mode] = _throughput(step, steps, batch, device, warmup=1)["step_ms"]
        rows.append({**row, "ratio": row["computed"] / row[modes[-1][0]]})
    return rows


def _alternate(ours, naive, repeats: int, device: torch.device) -> tuple[dict, dict, float]:
    """Run both measurements ``repeats`` times, alternating, and keep each side's fastest run: on a shared machine
    the load drifts, and alternating exposes both sides to it alike. Also returns csmri's peak memory (MiB)."""
    best_ours: dict = {}
    best_naive: dict = {}
    peak = 0.0
    for _ in range(max(1, repeats)):
        _reset_peak(device)
        r = ours()
        peak = max(peak, _peak_memory_mb(device))
        best_ours = max(best_ours, r, key=lambda x: x.get("slices_per_s", 0.0))
        best_naive = max(best_naive, naive(), key=lambda x: x.get("slices_per_s", 0.0))
    return best_ours, best_naive, peak


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="stage-1 image sizes")
    parser.add_argument("--stage2-sizes", type=int, nargs="*", default=[128])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per measurement")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternate csmri/naive this many times; the best of each is kept"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dlmri-workers", type=int, default=None, help="pool size (default: CPU cores); 0 = skip")
    parser.add_argument("--cache", default=".bench", help="where the benchmark's phantom data is kept")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    hardware = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    precision = resolve_precision("auto", "gpu" if device.type == "cuda" else "cpu")
    results: dict[str, Any] = {"device": hardware, "precision": precision, "stage1": [], "stage2": []}
    console = Console()
    console.print(f"[bold]csmri bench[/bold] — {hardware}; default precision here: {precision}")

    for size in args.sizes:
        root = phantom(size, cache)
        images = training_slices(root, 4 * STAGE1_BATCH, device)
        ours, naive, peak = _alternate(
            partial(csmri_path, "stage1", root, STAGE1_BATCH, args.steps, device),
            partial(naive_stage1, images, STAGE1_BATCH, args.steps),
            args.repeats,
            device,
        )
        row = {"size": size, "csmri": ours, "naive": naive, "ratio": ours["slices_per_s"] / naive["slices_per_s"]}
        row.update(mask_share(images, STAGE1_BATCH, ours["step_ms"]), peak_mb=peak)
        results["stage1"].append(row)
    for size in args.stage2_sizes:
        root = phantom(size, cache)
        images = training_slices(root, 4 * STAGE2_BATCH, device)
        ckpt = _stage1_checkpoint(cache / "stage1_random.ckpt")
        extra = [f"model.net.recon_ckpt={ckpt}", "model.net.perceptual.weights=random"]
        extra.append("model.log_images_every_n_steps=0")
        steps = max(3, args.steps // 2)
        ours, naive, peak = _alternate(
            partial(csmri_path, "stage2", root, STAGE2_BATCH, steps, device, *extra),
            partial(naive_stage2, images, STAGE2_BATCH, steps),
            args.repeats,
            device,
        )
        row = {"size": size, "csmri": ours, "naive": naive, "ratio": ours["slices_per_s"] / naive["slices_per_s"]}
        results["stage2"].append({**row, "peak_mb": peak})
    if args.stage2_sizes:
        results["vgg_terms"] = bench_vgg_terms(phantom(128, cache), device, max(2, args.steps // 5))
    workers = args.dlmri_workers if args.dlmri_workers is not None else (torch.multiprocessing.cpu_count() or 1)
    if workers and args.sizes:
        results["dlmri_128"] = bench_dlmri(training_slices(phantom(128, cache), workers, torch.device("cpu")), workers)

    _print(console, results, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        console.print(f"wrote {args.json}")
    return results


def _print(console: Console, results: dict[str, Any], steps: int) -> None:
    for stage, title in (
        ("stage1", "Stage 1 (RecNet), batch 20"),
        ("stage2", "Stage 2 (V + PatchGAN + VGG-19), batch 5"),
    ):
        if not results[stage]:
            continue
        table = Table(title=f"{title}: csmri ({results['precision']}) vs naive eager fp32, {steps} timed steps")
        columns = ["size", "csmri slices/s", "naive slices/s", "ratio", "peak MiB"]
        if stage == "stage1":
            columns += ["mask+undersample ms", "share of step"]
        for column in columns:
            table.add_column(column, justify="right")
        for r in results[stage]:
            cells = [f"{r['size']}²", f"{r['csmri']['slices_per_s']:.1f}", f"{r['naive']['slices_per_s']:.1f}"]
            cells += [f"{r['ratio']:.2f}×", f"{r['peak_mb']:.0f}"]
            if stage == "stage1":
                cells += [f"{r['sim_ms']:.2f}", f"{100 * r['sim_share']:.2f} %"]
            table.add_row(*cells)
        console.print(table)
    if results.get("vgg_terms"):
        table = Table(title="Perceptual term per GAN step (forward + backward), 128² magnitudes")
        columns = ["network", "batch", "targets' features computed, fp32 ms", "cached, fp32 ms", "cached, bf16 ms"]
        for column in [*columns, "ratio"]:
            table.add_column(column, justify="right")
        for r in results["vgg_terms"]:
            bf16 = f"{r['cached_bf16']:.0f}" if "cached_bf16" in r else "— (no native bf16)"
            cells = [f"{r['computed']:.0f}", f"{r['cached']:.0f}", bf16, f"{r['ratio']:.2f}×"]
            table.add_row(r["name"], str(r["batch"]), *cells)
        console.print(table)
    if "dlmri_128" in results:
        d = results["dlmri_128"]
        console.print(
            f"DLMRI (default settings), 128²: {d['serial_s']:.1f} s/slice serial, {d['pooled_s']:.1f} s/slice with "
            f"{d['workers']} workers; outputs identical: {d['identical']}"
        )


if __name__ == "__main__":
    main()
