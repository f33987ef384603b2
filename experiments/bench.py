"""Stage-1 training throughput and the cost of on-the-fly undersampling.

    python -m experiments.bench [--sizes 128 256] [--batch-size 8] [--steps 20] [--device cuda]

For each image size it times full training steps (mask drawing + undersampling + RecNet forward/backward +
Adam step, as the DataModule and stage-1 module do them) and, separately, the simulation alone
(``MaskSampler.simulate``: mask drawing + FFT + masking + zero-filling), and prints slices/s and the
simulation's share of a step. Targets: simulation share under 5 %.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from csmri.data import MaskSampler
from csmri.models import RecNet
from csmri.physics import channels_to_complex, complex_to_channels


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
    return {"size": size, "slices_per_s": batch_size / step_s, "step_ms": step_s * 1e3, "sim_ms": sim_s * 1e3,
            "sim_share": sim_s / step_s}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"

    table = Table(title=f"Stage-1 (RecNet nc=3 nd=3 nf=32) training, batch {args.batch_size}, acc 8 — {name}")
    for column in ("size", "slices/s", "step (ms)", "mask+undersample (ms)", "share of step"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        r = bench_size(size, args.batch_size, args.steps, device)
        table.add_row(f"{size}²", f"{r['slices_per_s']:.1f}", f"{r['step_ms']:.1f}", f"{r['sim_ms']:.2f}",
                      f"{100 * r['sim_share']:.2f} %")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
