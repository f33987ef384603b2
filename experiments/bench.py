"""Training throughput of stage 1 and stage 2, and the cost of on-the-fly undersampling.

    python -m experiments.bench [--sizes 128 256] [--batch-size 8] [--steps 10] [--device cuda] [--stages 1 2]

Stage 1: for each image size it times full training steps (mask drawing + undersampling + RecNet
forward/backward + Adam step, as the DataModule and stage-1 module do them) and, separately, the
simulation alone (``MaskSampler.simulate``: mask drawing + FFT + masking + zero-filling), and prints
slices/s and the simulation's share of a step (target: under 5 %).

Stage 2: times ``RefinementModule.training_step`` (D step + V step with the paper's networks and a
random-weight VGG-19, which costs the same as the ImageNet one) under a Lightning Trainer on random
complex images, batch 5, and reports slices/s and peak memory (CUDA: max allocated; CPU: peak RSS of
the process).
"""

from __future__ import annotations

import argparse
import resource
import time

import lightning as L
import torch
from rich.console import Console
from rich.table import Table

from csmri.models import RecNet
from csmri.physics import MaskSampler, channels_to_complex, complex_to_channels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        fn(warmup + i)
    _sync(device)
    return (time.perf_counter() - start) / steps


def bench_size(size: int, batch_size: int, steps: int, device: torch.device) -> dict[str, float]:
    g = torch.Generator(device=device).manual_seed(0)
    target = torch.randn(batch_size, size, size, dtype=torch.complex64, device=device, generator=g)
    sampler = MaskSampler(acceleration=8, seed=0)
    net = RecNet().to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-4)

    def simulate(step: int) -> dict:
        return sampler.simulate({"target": target}, train=True, step=step)

    def train_step(step: int) -> None:
        batch = simulate(step)
        recon = channels_to_complex(net(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"]))
        loss = torch.nn.functional.mse_loss(complex_to_channels(recon), complex_to_channels(batch["target"]))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step_s = _timed(train_step, steps, warmup=3, device=device)
    sim_s = _timed(simulate, steps * 5, warmup=3, device=device)
    return {
        "size": size,
        "slices_per_s": batch_size / step_s,
        "step_ms": step_s * 1e3,
        "sim_ms": sim_s * 1e3,
        "sim_share": sim_s / step_s,
    }


class _StepTimer(L.Callback):
    """Wall time of every training batch after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


class _RandomSlices(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, size, size, dtype=torch.complex64, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"target": self.images[i] / self.images[i].abs().max(), "key": f"bench/{i:03d}"}


class _BenchData(L.LightningDataModule):
    def __init__(self, n: int, size: int, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.sampler = _RandomSlices(n, size), batch_size, MaskSampler(8)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return self.sampler.simulate(batch, train=True, step=0)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def bench_stage2(size: int, steps: int, device: torch.device, batch_size: int = 5) -> dict[str, float]:
    from csmri.lit import RefinementModule

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net = {
        "refine": {"net": {"_target_": "csmri.models.UNet"}},
        "discriminator": {"net": {"_target_": "csmri.models.PatchDiscriminator"}},
        "perceptual": {"_target_": "csmri.models.VGGFeatures", "weights": "random"},
    }
    module = RefinementModule(net, loss={}, log_images_every_n_steps=0, recon_net={"_target_": "csmri.models.RecNet"})
    warmup = 2
    timer = _StepTimer(warmup)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_epochs=1,
        limit_train_batches=steps + warmup,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=_BenchData((steps + warmup) * batch_size, size, batch_size))
    step_s = sum(timer.times) / len(timer.times)
    return {
        "size": size,
        "slices_per_s": batch_size / step_s,
        "step_ms": step_s * 1e3,
        "peak_mb": _peak_memory_mb(device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"

    console = Console()
    if 1 in args.stages:
        table = Table(title=f"Stage 1 (RecNet nc=3 nd=3 nf=32) training, batch {args.batch_size}, acc 8 — {name}")
        for column in ("size", "slices/s", "step (ms)", "mask+undersample (ms)", "share of step"):
            table.add_column(column, justify="right")
        for size in args.sizes:
            r = bench_size(size, args.batch_size, args.steps, device)
            table.add_row(
                f"{size}²",
                f"{r['slices_per_s']:.1f}",
                f"{r['step_ms']:.1f}",
                f"{r['sim_ms']:.2f}",
                f"{100 * r['sim_share']:.2f} %",
            )
        console.print(table)
    if 2 in args.stages:
        table = Table(title=f"Stage 2 (V + PatchGAN + VGG-19 relu5_4) training, batch 5 — {name}")
        for column in ("size", "slices/s", "step (ms)", "peak memory (MiB)"):
            table.add_column(column, justify="right")
        for size in args.sizes:
            r = bench_stage2(size, max(2, args.steps // 2), device)
            table.add_row(f"{size}²", f"{r['slices_per_s']:.2f}", f"{r['step_ms']:.0f}", f"{r['peak_mb']:.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
