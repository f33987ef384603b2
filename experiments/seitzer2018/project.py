"""The hooks of the paper's pipeline files (``hooks: experiments.seitzer2018.project``; see :mod:`csmri.pipeline.spec`).

- ``${standin_needed:vgg19,${vgg_standin}}`` (an OmegaConf resolver, registered on import): whether the offline
  perceptual stand-in (VGG-19 trained as an autoencoder of the training images) is needed — the stand-in is allowed
  and the ImageNet VGG-19 file is absent (ImageNet weights stay the default when present); ``${lower:...}`` writes a
  value in lower case (a bool as an override: ``false``).
- :func:`check`: with ``vgg_standin: false`` (the paper profile) refuse to start without the ImageNet VGG files.
- :func:`inputs`: the perceptual-weights file a stage's loss loads when no reference passes it (the ImageNet VGG-19,
  or VGG-16 for DAGAN, present or not; a path given as an override), so that a changed file makes the stage stale.
- :func:`collect`: ``results/`` and its README (:mod:`experiments.seitzer2018.results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from csmri.config import override_key
from csmri.errors import ConfigError
from csmri.pipeline.inputs import Input

PERCEPTUAL_ARCH = {"stage2": "vgg19", "joint": "vgg19", "dagan": "vgg16"}  # experiments with a perceptual loss
WEIGHTS_KEY = "model.net.perceptual.weights"


def imagenet_file(arch: str) -> Path:
    from csmri.models.vgg import imagenet_weights_file  # here, not at import: it imports torch

    return imagenet_weights_file(arch)


def standin_needed(arch: str, allowed: Any) -> bool:
    """The offline stand-in of ``arch`` is needed: it is ``allowed`` and the ImageNet file is absent."""
    return bool(allowed) and not imagenet_file(str(arch)).is_file()


OmegaConf.register_new_resolver("standin_needed", standin_needed, replace=True)
OmegaConf.register_new_resolver("lower", lambda value: str(value).lower(), replace=True)  # a bool as Hydra writes it


def check(runner: Any) -> None:
    """With ``vgg_standin: false`` refuse to start without the ImageNet VGG files the perceptual losses need: a
    random-weight stand-in would silently change what the table measures."""
    if runner.cfg.get("vgg_standin", True):
        return
    missing = [imagenet_file(arch) for arch in ("vgg19", "vgg16") if not imagenet_file(arch).is_file()]
    if missing:
        raise ConfigError(
            f"pipeline {runner.cfg.name}: the ImageNet VGG weights are missing: " + ", ".join(str(m) for m in missing),
            "put the torchvision files there (they download there once with internet, or copy them from a machine "
            "that has them), or accept a random-weight stand-in explicitly with vgg_standin=true (recorded in "
            "results/README.md)",
        )


def perceptual_weights(runner: Any, name: str) -> Path | None:
    """The weights file run ``name``'s perceptual loss loads: its last ``model.net.perceptual.weights=`` (default
    ``imagenet``: torchvision's cached VGG-19, or VGG-16 for DAGAN, whether or not it is there yet); ``None`` for
    ``random`` or a run without a perceptual loss."""
    arch = PERCEPTUAL_ARCH.get(str(runner.runs[name].experiment))
    if arch is None:
        return None
    value = "imagenet"
    for arg in runner.args(name):
        if override_key(arg) == WEIGHTS_KEY:
            value = arg.partition("=")[2]
    if value == "random":
        return None
    return imagenet_file(arch) if value == "imagenet" else Path(value)


def inputs(runner: Any, run: Any) -> list[Input]:
    """The perceptual weights as an external input, unless a reference (a stage's output) already passes them."""
    weights = perceptual_weights(runner, run.name) if run.command == "train" else None
    if weights is None or any(path == weights for ref in run.refs() for _, path in runner.paths(ref)):
        return []
    return [Input("perceptual weights", weights)]


def collect(runner: Any, elapsed_s: float) -> Path:
    from experiments.seitzer2018.results import collect as write_results

    return write_results(runner, elapsed_s)
