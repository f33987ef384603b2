"""The precision policy: ``trainer.precision=auto`` picks the fastest safe mode for the machine.

- ``bf16-mixed`` where the hardware computes bf16 natively: a CPU with AVX-512-bf16 or AMX-bf16
  (``/proc/cpuinfo`` flags ``avx512_bf16``/``amx_bf16``), or a CUDA GPU that supports bf16 (Ampere and newer);
- ``32-true`` otherwise. ``32-true`` is always one override away (``trainer.precision=32-true``); with it,
  TF32 matmuls/convolutions are enabled on Ampere+ GPUs.

Under ``bf16-mixed`` only the networks' convolutions/matmuls run in bf16: the physics (FFTs, masks, k-space, data
consistency) disables autocast and stays complex64/fp32, and losses and metrics are computed in fp32.
Asking for ``bf16-mixed`` on hardware without bf16 is an error (it would run an order of magnitude slower).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (Linux: ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def device_type(accelerator: str) -> str:
    """``cpu`` or ``cuda`` for a Lightning ``accelerator`` setting (``auto`` picks CUDA when available)."""
    if accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def resolve_precision(precision: str | int, accelerator: str = AUTO) -> str:
    """The Lightning precision to use for ``precision`` (``auto`` or any Lightning value) on ``accelerator``."""
    precision = str(precision)
    device = device_type(accelerator)
    if precision == AUTO:
        chosen = "bf16-mixed" if bf16_supported(device) else "32-true"
        log.info("trainer.precision=auto -> %s (%s)", chosen, device)
        return chosen
    if precision in ("bf16-mixed", "bf16") and not bf16_supported(device):
        why = "needs an Ampere or newer GPU" if device == "cuda" else "no avx512_bf16/amx_bf16 CPU flag"
        raise ValueError(
            f"trainer.precision={precision}: this {device.upper()} has no native bf16 support ({why}), so it would "
            "run about 10x slower than fp32; use trainer.precision=32-true or trainer.precision=auto"
        )
    return precision


def configure_matmul(precision: str, accelerator: str = AUTO) -> None:
    """Enable TF32 tensor cores for fp32 runs on CUDA (Ampere+); a no-op on CPU."""
    if device_type(accelerator) == "cuda" and precision.startswith("32"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
