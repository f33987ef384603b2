"""csmri checkpoints: reading them (without executing code: ``weights_only=True``), the registry of the
LightningModules that wrote them (:data:`MODULES`, :func:`load_module`, read by evaluation and inference alike),
the inference-only form kept for every checkpoint but ``last.ckpt`` (:func:`inference_checkpoint`), and the
atomic writer."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from csmri.errors import CheckpointError, ConfigError, CsmriError, path_hint
from csmri.lit._config import build
from csmri.lit.optim import adam

# csmri_module tag written into each checkpoint -> the LightningModule class that reads it
MODULES = {
    "reconstruction": "csmri.lit.reconstruction.ReconstructionModule",
    "refinement": "csmri.lit.refinement.RefinementModule",
    "segmentation": "csmri.lit.segmentation.SegmentationModule",
    "adversarial": "csmri.lit.adversarial.AdversarialReconstructionModule",
}

RUN_CHECKPOINTS = ("best.ckpt", "last.ckpt")  # what a run folder stands for, in order of preference


def run_checkpoint(path: str | Path, what: str = "checkpoint") -> Path:
    """``path`` itself for a file; for a run folder (or its ``checkpoints/``) its ``checkpoints/best.ckpt``, else
    ``last.ckpt``; a :class:`csmri.errors.CheckpointError` for a folder holding neither."""
    path = Path(path)
    if not path.is_dir():
        return path
    for folder in (path / "checkpoints", path):
        for name in RUN_CHECKPOINTS:
            if (folder / name).is_file():
                return folder / name
    raise CheckpointError(
        f"{what} {path} is a folder without checkpoints/best.ckpt or checkpoints/last.ckpt",
        "pass a `csmri train` run folder (it holds checkpoints/) or a .ckpt file",
    )


def read_checkpoint(path: str | Path, what: str = "checkpoint", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file safely; clear errors for a missing or unreadable file. ``mmap``: map the tensors instead
    of reading them (for callers that only look at the metadata of a possibly large file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{what} {path} does not exist",
            f"point it at an existing .ckpt file (nearest existing folder: {path_hint(path)})",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(
            f"cannot read {what} {path} ({load_failure(err)})",
            "the file is damaged (e.g. truncated by an interrupted copy) or not a csmri checkpoint",
        ) from err


INFERENCE_ONLY = "csmri_inference_only"  # checkpoint key: the state-dict prefixes left out (see below)
TRAINING_ONLY_PREFIXES = ("discriminator.", "perceptual.", "replay.")  # training only: D, VGG (if stored), replay


def inference_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``checkpoint`` with only what reconstruction and evaluation need: no optimiser or scheduler state,
    and none of the state under :data:`TRAINING_ONLY_PREFIXES` (a stage-2 checkpoint: about 340 MB -> under 2 MB).

    Everything else is kept — the reconstruction networks, hyper-parameters, the recorded acquisition, perceptual
    backbone, epoch and checkpoint-callback state (the table's provenance) — and ``csmri_inference_only`` lists the
    prefixes left out, so :func:`check_inference_load` can tell a deliberately smaller file from a damaged one.
    Training cannot resume from it. Applied to an inference-only checkpoint it returns an equal copy.
    """
    state = checkpoint["state_dict"]
    found = {p for p in TRAINING_ONLY_PREFIXES for k in state if k.startswith(p)}
    dropped = sorted(found | set(checkpoint.get(INFERENCE_ONLY) or ()))
    slim = {k: v for k, v in checkpoint.items() if k not in ("optimizer_states", "lr_schedulers", "state_dict")}
    slim["state_dict"] = {k: v for k, v in state.items() if not k.startswith(tuple(dropped))}
    slim[INFERENCE_ONLY] = dropped
    return slim


def restore_left_out_state(module: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Fill the state an inference-only ``checkpoint`` left out with ``module``'s own (freshly initialised) entries,
    in place, so that a strict ``load_state_dict`` (``Module.load_from_checkpoint(best.ckpt)``) loads it; a no-op
    for a full checkpoint. Called from the modules' ``on_load_checkpoint``."""
    dropped = tuple(checkpoint.get(INFERENCE_ONLY) or ())
    state = checkpoint.get("state_dict")
    if not dropped or not isinstance(state, dict):
        return
    for key, value in module.state_dict().items():
        if key.startswith(dropped) and key not in state:
            state[key] = value


def check_inference_load(module: nn.Module, checkpoint: dict[str, Any], what: str) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint``'s state covers ``module`` except for the prefixes it says
    it left out (an inference-only file loads with ``strict=False``; this keeps the strictness that matters)."""
    dropped = tuple(checkpoint.get(INFERENCE_ONLY) or ())
    have, want = set(checkpoint["state_dict"]), set(module.state_dict())
    missing = sorted(k for k in want - have if not k.startswith(dropped))
    unexpected = sorted(have - want)
    if missing or unexpected:
        listed = ", ".join([*(f"missing {k}" for k in missing[:3]), *(f"unexpected {k}" for k in unexpected[:3])])
        raise CheckpointError(
            f"cannot load {what} as a {type(module).__name__} ({listed})",
            "the file is damaged or was written by an incompatible csmri version; export it again from the "
            "training checkpoint",
        )


def refuse_inference_only_resume(path: str | Path) -> None:
    """``ckpt_path`` must be a training checkpoint: an inference-only one has no optimiser state to resume."""
    if INFERENCE_ONLY in read_checkpoint(path, "ckpt_path", mmap=True):
        raise ConfigError(
            f"ckpt_path {path} is an inference-only checkpoint (a run's best.ckpt, or `csmri export --format "
            "checkpoint`): it holds no optimiser or discriminator state to resume training from",
            "resume from the run's own checkpoints/last.ckpt",
        )


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
    checkpoint = read_checkpoint(path, "stage-1 checkpoint (model.net.recon_ckpt)")
    config = checkpoint.get("hyper_parameters", {}).get("net")
    if checkpoint.get("csmri_module") != "reconstruction" or not isinstance(config, dict):
        found = checkpoint.get("csmri_module", "unknown")
        raise ConfigError(
            f"{path} is not a stage-1 checkpoint (written by {found!r} module, expected 'reconstruction'); "
            "point model.net.recon_ckpt at checkpoints/best.ckpt of an `experiment=stage1` run"
        )
    net = build(config, "stage-1 network")
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net, config


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


def upgrade_legacy_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters of a checkpoint written by an earlier csmri as today's constructor arguments, so such
    checkpoints keep loading (``csmri eval``, ``csmri reconstruct``) with their own settings:

    - optimiser settings as ``lr``/``betas``/``weight_decay`` keys -> the ``optimizer`` config;
    - the adversarial modules' ``loss.replay`` -> ``net.discriminator.replay`` (D's experience replay), and
      ``loss.vgg_cache_mb`` / ``loss.vgg_precision`` -> the module's own ``vgg_cache_mb`` / ``vgg_precision``
      (the loss config holds only the loss: :class:`csmri.losses.config.AdversarialLoss`).
    """
    hparams = dict(hparams)
    if "optimizer" not in hparams and "lr" in hparams:
        legacy = {k: hparams.pop(k) for k in ("lr", "betas", "weight_decay") if k in hparams}
        hparams["optimizer"] = adam(legacy["lr"], legacy.get("betas", (0.9, 0.999)), legacy.get("weight_decay", 0.0))
    loss, net = hparams.get("loss"), hparams.get("net")
    if isinstance(loss, Mapping) and any(k in loss for k in LEGACY_LOSS_KEYS):
        loss = dict(loss)
        replay = loss.pop("replay", None)
        for key in ("vgg_cache_mb", "vgg_precision"):
            if key in loss:
                hparams[key] = loss.pop(key)
        hparams["loss"] = loss
        if replay is not None and isinstance(net, Mapping) and isinstance(net.get("discriminator"), Mapping):
            hparams["net"] = {**net, "discriminator": {**net["discriminator"], "replay": dict(replay)}}
    return hparams


LEGACY_LOSS_KEYS = ("replay", "vgg_cache_mb", "vgg_precision")  # in ``loss`` before they moved (see above)


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
