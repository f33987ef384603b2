"""Reconstruction methods for evaluation: the ``Reconstructor`` interface and its implementations.

A method is any object with ``reconstruct(batch) -> complex (B, H, W)`` on the batch's device, where
``batch`` is a simulated batch of :class:`csmri.data.MRIDataModule` (``target``, ``kspace``, ``mask``,
``zero_filled``, ``key``, ...). Every method of one evaluation receives the same batches, so the
same fixed per-slice masks.

A method trained several times (e.g. from several seeds) is a :class:`TrainingRuns`: its ``runs`` are evaluated
one by one and its table row holds each slice's metrics averaged over them (see :mod:`csmri.eval.runner`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch

from csmri.errors import CheckpointError, ConfigError, CsmriError
from csmri.lit.checkpoints import (
    INFERENCE_ONLY,
    check_inference_load,
    load_failure,
    read_checkpoint,
    upgrade_legacy_hparams,
)
from csmri.run_info import perceptual_precision_label

# csmri_module tag written into each checkpoint -> the LightningModule class that reads it
MODULES = {
    "reconstruction": "csmri.lit.reconstruction.ReconstructionModule",
    "refinement": "csmri.lit.refinement.RefinementModule",
    "segmentation": "csmri.lit.segmentation.SegmentationModule",
    "adversarial": "csmri.lit.adversarial.AdversarialReconstructionModule",
}


@runtime_checkable
class Reconstructor(Protocol):
    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Complex reconstructions ``(B, H, W)`` of a simulated batch."""
        ...


class ZeroFilled:
    """The zero-filled reconstruction ``F_u^H y`` itself."""

    def reconstruct(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return batch["zero_filled"]


def load_module(path: str | Path, what: str = "checkpoint") -> L.LightningModule:
    """Load any csmri LightningModule checkpoint (its class is recorded in the file) in eval mode, on CPU.

    Only what reconstruction needs is loaded faithfully: a perceptual (VGG) extractor, used by training
    losses alone, is built with random weights instead of being fetched. The backbone the run actually
    trained with stays available as ``module.trained_perceptual_backbone``. An inference-only checkpoint
    (:func:`csmri.lit.checkpoints.inference_checkpoint`) loads with the state it left out (discriminator, VGG)
    freshly initialised; any other missing or unexpected entry is an error, as for a full checkpoint.
    """
    checkpoint = read_checkpoint(path, what)
    tag = checkpoint.get("csmri_module")
    if tag not in MODULES:
        raise ConfigError(
            f"{what} {path} was not written by a csmri training stage (module tag {tag!r})",
            "use checkpoints/best.ckpt or last.ckpt of a `csmri train` run",
        )
    module_path, name = MODULES[tag].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_path), name)
    hparams = checkpoint.get("hyper_parameters", {})
    upgraded = upgrade_legacy_hparams(hparams)  # keys of earlier csmri versions as today's constructor arguments
    overrides = {k: v for k, v in upgraded.items() if k not in hparams or v != hparams[k]}
    net = upgraded.get("net")
    if isinstance(net, dict) and isinstance(net.get("perceptual"), dict):
        overrides["net"] = {**net, "perceptual": {**net["perceptual"], "weights": "random"}}
    inference_only = INFERENCE_ONLY in checkpoint
    try:
        with warnings.catch_warnings():  # Lightning lists the keys an inference-only file left out; checked below
            warnings.filterwarnings("ignore", "Found keys that are in the model state dict but not in the checkpoint")
            module = cls.load_from_checkpoint(
                path, map_location="cpu", weights_only=True, strict=not inference_only, **overrides
            ).eval()
        if inference_only:
            check_inference_load(module, checkpoint, f"{what} {path}")
    except CsmriError:
        raise
    except Exception as err:  # missing entries, mismatched weights: a damaged or foreign file
        raise CheckpointError(
            f"cannot load {what} {path} as a {name} ({load_failure(err)})",
            "the file is damaged or was written by an incompatible csmri version; use another checkpoint",
        ) from err
    module.trained_perceptual_backbone = checkpoint.get("perceptual_backbone", "")
    module.trained_perceptual_precision = checkpoint.get("perceptual_precision", "")  # bf16 | 32 | none | "" (older)
    module.checkpoint_provenance = checkpoint_provenance(path, checkpoint)
    return module


def checkpoint_provenance(path: str | Path, checkpoint: Mapping[str, Any]) -> str:
    """Which weights a checkpoint holds, for the table's footnote: e.g. ``last.ckpt, epoch 29 (end of training)`` or
    ``best.ckpt, epoch 12 (best val/nmse on the validation split)``."""
    name, epoch = Path(path).name, checkpoint.get("epoch")
    where = f"{name}, epoch {epoch}" if epoch is not None else name
    monitor = next(
        (
            state["monitor"]
            for key, state in checkpoint.get("callbacks", {}).items()
            if "ModelCheckpoint" in str(key)
            and isinstance(state, Mapping)
            and state.get("monitor")
            and Path(str(state.get("best_model_path", ""))).name == name
        ),
        None,
    )
    return f"{where} ({'best ' + monitor + ' on the validation split' if monitor else 'end of training'})"


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
