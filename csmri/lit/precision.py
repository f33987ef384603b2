"""The precision policy: ``trainer.precision=auto`` picks the fastest safe mode for the machine.

- ``bf16-mixed`` where bf16 is *faster* than fp32: a CPU with AMX tiles (``/proc/cpuinfo`` flag ``amx_bf16``),
  or a CUDA GPU that supports bf16 (Ampere and newer);
- ``32-true`` otherwise — including CPUs with ``avx512_bf16`` but no AMX: there oneDNN's bf16 convolutions
  measured no faster than fp32 channels-last (RecNet's 32->32 3x3 conv, batch 20, 128², fwd+bwd: 130 ms bf16 vs
  118 ms fp32; 64->64: 531 vs 386 ms), so mixed precision would cost accuracy for nothing.
  ``32-true`` is always one override away (``trainer.precision=32-true``); with it, TF32 matmuls/convolutions are
  enabled on Ampere+ GPUs.

Under ``bf16-mixed`` only the networks' convolutions/matmuls run in bf16: the physics (FFTs, masks, k-space, data
consistency) disables autocast and stays complex64/fp32, and losses and metrics are computed in fp32.
Asking for ``bf16-mixed`` explicitly is allowed wherever bf16 is native (``avx512_bf16`` or ``amx_bf16``) and an
error elsewhere (it would run an order of magnitude slower).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AUTO = "auto"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 computed natively
BF16_FAST_CPU_FLAGS = ("amx_bf16",)  # ... and faster than fp32 for our convolutions


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def cpu_bf16_is_faster() -> bool:
    """Whether bf16 convolutions beat fp32 channels-last on this CPU (AMX tiles)."""
    return any(flag in cpu_flags() for flag in BF16_FAST_CPU_FLAGS)


def device_type(accelerator: str) -> str:
    """``cpu`` or ``cuda`` for a Lightning ``accelerator`` setting (``auto`` picks CUDA when available)."""
    if accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def bf16_supported(device: str) -> bool:
    """bf16 is computed natively (allowed when asked for)."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def bf16_preferred(device: str) -> bool:
    """bf16-mixed is the fastest safe mode (what ``auto`` picks)."""
    if device == "cuda":
        return bf16_supported(device)
    return cpu_bf16_is_faster()


def resolve_precision(precision: str | int, accelerator: str = AUTO) -> str:
    """The Lightning precision to use for ``precision`` (``auto`` or any Lightning value) on ``accelerator``."""
    precision = str(precision)
    device = device_type(accelerator)
    if precision == AUTO:
        chosen = "bf16-mixed" if bf16_preferred(device) else "32-true"
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
