"""Reconstruction methods for evaluation: the ``Reconstructor`` interface and its implementations.

A method is any object with ``reconstruct(batch) -> complex (B, H, W)`` on the batch's device, where
``batch`` is a simulated batch of :class:`csmri.data.MRIDataModule` (``target``, ``kspace``, ``mask``,
``zero_filled``, ``key``, ...). Every method of one evaluation receives the same batches, so the
same fixed per-slice masks.

A method trained several times (e.g. from several seeds) is a :class:`TrainingRuns`: its ``runs`` are evaluated
one by one and its table row holds each slice's metrics averaged over them (see :mod:`csmri.eval.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from csmri.errors import ConfigError
from csmri.lit.checkpoints import MODULES, checkpoint_provenance, load_module
from csmri.run_info import perceptual_precision_label

__all__ = ["MODULES", "CheckpointMethod", "TrainingRuns", "checkpoint_method", "checkpoint_provenance", "load_module"]


@runtime_checkable
class Reconstructor(Protocol):
    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Complex reconstructions ``(B, H, W)`` of a simulated batch."""
        ...


class ZeroFilled:
    """The zero-filled reconstruction ``F_u^H y`` itself."""

    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch["zero_filled"]


def run_folder(ckpt: str | Path) -> str:
    """The run a checkpoint belongs to, for footnotes: the folder that holds ``checkpoints/`` (e.g. ``stage2_seed1``),
    else the file's own folder."""
    path = Path(ckpt)
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name


class CheckpointMethod:
    """A trained csmri stage (stage 1, stage 2, DAGAN, joint) loaded from its checkpoint."""

    def __init__(self, ckpt: str | None = None, name: str = "checkpoint") -> None:
        if not ckpt:
            raise ConfigError(
                f"method `{name}` needs a checkpoint: set {name}.ckpt=PATH",
                "checkpoints/best.ckpt of the matching `csmri train` run, or drop it from methods",
            )
        self.module = load_module(ckpt, f"{name}.ckpt")
        self.run_name = run_folder(ckpt)
        if not hasattr(self.module, "reconstruct"):
            raise ConfigError(f"{name}.ckpt={ckpt} is a {type(self.module).__name__}, not a reconstruction method")

    def to(self, device: torch.device) -> CheckpointMethod:
        self.module.to(device)
        return self

    @property
    def description(self) -> str:
        """The perceptual backbone the method was trained with ("" when it had none)."""
        return self.module.trained_perceptual_backbone

    @property
    def provenance(self) -> str:
        """Which checkpoint is evaluated and how it was chosen, with the perceptual backbone where there is one."""
        backbone = f"; perceptual backbone {self.description}" if self.description else ""
        label = perceptual_precision_label(self.module.trained_perceptual_precision)
        if backbone and label:
            backbone += f" {label}"
        return self.module.checkpoint_provenance + backbone

    @torch.inference_mode()
    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.module.reconstruct(batch)


class TrainingRuns:
    """One method trained several times (seeds, or any setting the runs share): each run's checkpoint is a
    :class:`CheckpointMethod`. The evaluation reconstructs every slice with every run and reports the method as each
    slice's metrics averaged over the runs (a mean over training randomness, never an average of images: averaging
    the images of adversarially trained runs would blur what each of them adds). ``reconstruct`` is the first run's:
    it is the image the figure and ``recons.npz`` show."""

    def __init__(self, runs: Sequence[CheckpointMethod]) -> None:
        if len(runs) < 2:
            raise ValueError(f"TrainingRuns needs at least 2 runs, got {len(runs)}")
        self.runs = list(runs)
        names = [run.run_name for run in self.runs]
        unique = len(set(names)) == len(names)  # else (runs from same-named folders) numbered
        self.run_names = names if unique else [f"{name}#{i}" for i, name in enumerate(names)]

    def to(self, device: torch.device) -> TrainingRuns:
        self.runs = [run.to(device) for run in self.runs]
        return self

    @property
    def description(self) -> str:
        """The runs' perceptual backbone(s), each named once."""
        return ", ".join(dict.fromkeys(run.description for run in self.runs if run.description))

    @property
    def provenance(self) -> str:
        listed = "; ".join(f"{name}: {run.provenance}" for name, run in zip(self.run_names, self.runs, strict=True))
        return (
            f"each slice's metrics averaged over {len(self.runs)} training runs ({listed}); "
            f"the figure shows {self.run_names[0]}"
        )

    @torch.inference_mode()
    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.runs[0].reconstruct(batch)


def checkpoint_method(ckpt: str | Sequence[str] | None = None, name: str = "checkpoint") -> Any:
    """``method/checkpoint.yaml``'s target: a :class:`CheckpointMethod` for one path (``<name>.ckpt=PATH``), a
    :class:`TrainingRuns` for a list of two or more (``<name>.ckpt=[P1,P2,...]``: the same method trained from
    several seeds)."""
    paths = [ckpt] if isinstance(ckpt, str | Path) or ckpt is None else [str(p) for p in ckpt]
    if len(paths) <= 1:
        return CheckpointMethod(paths[0] if paths else None, name)
    if len(set(paths)) != len(paths):
        raise ConfigError(f"{name}.ckpt lists a checkpoint twice: {paths}", "list each training run once")
    return TrainingRuns([CheckpointMethod(p, f"{name}[{i}]") for i, p in enumerate(paths)])
