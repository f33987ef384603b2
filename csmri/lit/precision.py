"""The precision policy: ``trainer.precision=auto`` picks the fastest safe mode for the machine.

- ``bf16-mixed`` where bf16 is *faster* than fp32: a CPU with AMX tiles (``/proc/cpuinfo`` flag ``amx_bf16``),
  or a CUDA GPU that supports bf16 (Ampere and newer);
- on CPUs with ``avx512_bf16`` but no AMX it depends on the network: RecNet's narrow convolutions measured no faster
  in bf16 than fp32 channels-last (32->32 3x3 conv, batch 20, 128², fwd+bwd: 130 ms bf16 vs 118 ms fp32), so
  mixed precision would cost accuracy for nothing (``32-true``); VGG-width networks (64-512 channels) run ~2x
  faster in bf16 (VGG-19 autoencoder step, batch 8, 128²: 2.2 s fp32 vs 1.0 s bf16), so modules made of them
  declare ``wide_convolutions = True`` and get ``bf16-mixed``;
- ``32-true`` everywhere else.
  ``32-true`` is always one override away (``trainer.precision=32-true``); with it, TF32 matmuls/convolutions are
  enabled on Ampere+ GPUs.

Under ``bf16-mixed`` only the networks' convolutions/matmuls run in bf16: the physics (FFTs, masks, k-space, data
consistency) disables autocast and stays complex64/fp32, and losses and metrics are computed in fp32.
Asking for ``bf16-mixed`` explicitly is allowed wherever bf16 is native (``avx512_bf16`` or ``amx_bf16``) and an
error elsewhere (it would run an order of magnitude slower).

The frozen VGG networks of the perceptual losses have their own setting (:func:`resolve_feature_precision`, the
loss configs' ``vgg_precision``): ``auto`` runs them in bf16 wherever bf16 is native, whatever the trainer's
precision, because they are wide (DAGAN's VGG-16 at 244², batch 25, forward + backward: 10.4 s fp32 vs 5.0 s bf16
on a 2-core ``avx512_bf16`` CPU) and only feed a loss, whose value is computed in fp32.
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


def bf16_preferred(device: str, wide: bool = False) -> bool:
    """bf16-mixed is the fastest safe mode (what ``auto`` picks) for networks of narrow or ``wide`` convolutions."""
    if device == "cuda":
        return bf16_supported(device)
    return cpu_bf16_is_faster() or (wide and cpu_has_bf16())


def resolve_precision(precision: str | int, accelerator: str = AUTO, wide: bool = False) -> str:
    """The Lightning precision to use for ``precision`` (``auto`` or any Lightning value) on ``accelerator``;
    ``wide``: the module's networks are VGG-width (see the module docstring)."""
    precision = str(precision)
    device = device_type(accelerator)
    if precision == AUTO:
        chosen = "bf16-mixed" if bf16_preferred(device, wide) else "32-true"
        log.info("trainer.precision=auto -> %s (%s)", chosen, device)
        return chosen
    if precision in ("bf16-mixed", "bf16") and not bf16_supported(device):
        why = "needs an Ampere or newer GPU" if device == "cuda" else "no avx512_bf16/amx_bf16 CPU flag"
        raise ValueError(
            f"trainer.precision={precision}: this {device.upper()} has no native bf16 support ({why}), so it would "
            "run about 10x slower than fp32; use trainer.precision=32-true or trainer.precision=auto"
        )
    return precision


FEATURE_PRECISIONS = (AUTO, "32", "bf16")


def check_feature_precision(setting: str) -> str:
    """``setting`` if it is a valid ``vgg_precision`` (``auto``, ``32`` or ``bf16``); a ValueError otherwise."""
    setting = str(setting)
    if setting not in FEATURE_PRECISIONS:
        raise ValueError(f"vgg_precision must be one of {', '.join(FEATURE_PRECISIONS)}, got {setting!r}")
    return setting


def resolve_feature_precision(setting: str, device: str) -> bool:
    """Whether a frozen feature network (a perceptual loss's VGG) runs in bf16 on ``device`` (``cpu``/``cuda``).

    ``setting``: ``auto`` (bf16 where native), ``32`` (always fp32) or ``bf16`` (an error where bf16 is not native).
    """
    setting = check_feature_precision(setting)
    native = device in ("cpu", "cuda") and bf16_supported(device)
    if setting == "bf16" and not native:
        raise ValueError(
            f"vgg_precision=bf16: this {device.upper()} has no native bf16 support, so the VGG would run about 10x "
            "slower than fp32; use vgg_precision=auto or 32"
        )
    return native and setting != "32"


def configure_matmul(precision: str, accelerator: str = AUTO) -> None:
    """Enable TF32 tensor cores for fp32 runs on CUDA (Ampere+); a no-op on CPU."""
    if device_type(accelerator) == "cuda" and precision.startswith("32"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
