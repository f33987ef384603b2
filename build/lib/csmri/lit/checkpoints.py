"""Loading networks out of csmri checkpoints (without executing code: ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from csmri.lit._config import build


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint file safely; clear errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from err


def load_reconstruction_net(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a stage-1 checkpoint and its ``{_target_: ...}`` config.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a checkpoint that was not
    written by :class:`csmri.lit.ReconstructionModule`.
    """
    checkpoint = read_checkpoint(path, "stage-1 checkpoint (model.recon_ckpt)")
    config = checkpoint.get("hyper_parameters", {}).get("net")
    if checkpoint.get("csmri_module") != "reconstruction" or not isinstance(config, dict):
        found = checkpoint.get("csmri_module", "unknown")
        raise ValueError(
            f"{path} is not a stage-1 checkpoint (written by {found!r} module, expected 'reconstruction'); "
            "point model.recon_ckpt at checkpoints/best.ckpt of an `experiment=stage1` run"
        )
    net = build(config, "stage-1 network")
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net, config
