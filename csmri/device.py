"""Which torch device a command runs on (``device: auto | cpu | cuda | cuda:N`` of ``csmri eval``, ``csmri.load``)."""

from __future__ import annotations

import torch

from csmri.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as given.

    An unknown device name, or a CUDA device on a machine without CUDA, is a :class:`csmri.errors.ConfigError`.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {str(device)!r}", "use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} asked for but CUDA is not available", "use auto or cpu")
    return resolved
