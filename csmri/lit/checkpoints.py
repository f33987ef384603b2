"""Loading networks out of csmri checkpoints (without executing code: ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from csmri.errors import CheckpointError, ConfigError, path_hint
from csmri.lit._config import build


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint file safely; clear errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{what} {path} does not exist",
            f"point it at an existing .ckpt file (nearest existing folder: {path_hint(path)})",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read {what} {path} ({load_failure(err)})",
            "the file is damaged (e.g. truncated by an interrupted copy) or not a csmri checkpoint",
        ) from err


def load_failure(err: BaseException) -> str:
    """A short reason for a failed checkpoint load (torch's messages run over several long lines)."""
    text = str(err).strip()
    if "Weights only load failed" in text:
        return "not a file of plain tensors and values: csmri loads checkpoints with weights_only=True"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if first.endswith(":") and len(lines) > 1:  # "Error(s) in loading state_dict for X:" + the first error
        first = f"{first} {lines[1]}"
    first = first.split(". ")[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_reconstruction_net(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a stage-1 checkpoint and its ``{_target_: ...}`` config.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a checkpoint that was not
    written by :class:`csmri.lit.ReconstructionModule`.
    """
    checkpoint = read_checkpoint(path, "stage-1 checkpoint (model.recon_ckpt)")
    config = checkpoint.get("hyper_parameters", {}).get("net")
    if checkpoint.get("csmri_module") != "reconstruction" or not isinstance(config, dict):
        found = checkpoint.get("csmri_module", "unknown")
        raise ConfigError(
            f"{path} is not a stage-1 checkpoint (written by {found!r} module, expected 'reconstruction'); "
            "point model.recon_ckpt at checkpoints/best.ckpt of an `experiment=stage1` run"
        )
    net = build(config, "stage-1 network")
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net, config


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the file is written to a temporary sibling,
    flushed to disk and renamed over the target, so a kill at any moment leaves either the old or the new file
    complete (Lightning's own writer may copy from /tmp into place, which a kill can leave half-written).

    ``$CSMRI_TEST_SAVE_DELAY_S`` (tests only) pauses half-way through writing the temporary file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        import io
        import os
        import time

        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        delay = float(os.environ.get("CSMRI_TEST_SAVE_DELAY_S", "0") or 0)
        try:
            with open(tmp, "wb") as f:
                half = len(data) // 2 if delay else len(data)
                f.write(data[:half])
                if delay:
                    f.flush()
                    time.sleep(delay)
                f.write(data[half:])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
