"""Frozen VGG feature extractor (VGG-19 for the perceptual loss; VGG-16 for DAGAN's VGG term).

``arch`` is ``vgg19`` (default) or ``vgg16``; layers are named as in :data:`LAYERS_BY_ARCH`.

Weights (``weights=``):

- ``imagenet``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` / ``VGG16_Weights.IMAGENET1K_V1`` through its
  standard weights API, so the torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` or
  ``vgg16-397923af.pth``) and, with internet, the download work as usual. Offline and uncached this fails
  with a message naming the expected file — unless ``allow_random_fallback`` is set, in which case a seeded
  random network is used with a one-line warning (once per process) and :attr:`VGGFeatures.backbone` says
  ``vgg19-random`` / ``vgg16-random`` (record it: numbers from it are not comparable). A download is tried at most
  once per process (a failure is remembered) and never with ``CSMRI_OFFLINE=1``.
- a path to a ``.pth`` state dict of torchvision's ``vgg19`` / ``vgg16`` (complete, or only its ``features.*``
  entries: the classifier is never used), or to a ``.npz`` of the Caffe VGG
  converted to TensorFlow (keys ``conv1_1_W`` (3, 3, in, out), ``conv1_1_b``, …; e.g. the ``vgg16_weights.npz``
  DAGAN loads): those weights expect [0, 255] RGB inputs minus the mean, not torchvision's normalisation;
- ``random``: a seeded random-weight stand-in.

The extractor is frozen: no trainable parameters, always in eval mode, and its tensors are left out of
``state_dict()`` (so never in a checkpoint); loading a state dict without them keeps the current weights.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from csmri.errors import PerceptualWeightsUnavailable

log = logging.getLogger(__name__)

# index of each named layer in torchvision's vgg19().features
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35, "conv5_4": 34}
# ... and in vgg16().features; pool4 (after conv4_3 + ReLU) is what DAGAN's code calls ``conv4``
VGG16_LAYERS = {
    "relu1_2": 3,
    "relu2_2": 8,
    "relu3_3": 15,
    "conv4_3": 21,
    "relu4_3": 22,
    "pool4": 23,
    "conv5_3": 28,
    "relu5_3": 29,
}
LAYERS_BY_ARCH = {"vgg19": LAYERS, "vgg16": VGG16_LAYERS}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _torchvision(arch: str) -> tuple[Any, Any]:
    """torchvision's constructor and ImageNet weights enum for ``arch``."""
    from torchvision.models import VGG16_Weights, VGG19_Weights, vgg16, vgg19

    builders = {"vgg19": (vgg19, VGG19_Weights.IMAGENET1K_V1), "vgg16": (vgg16, VGG16_Weights.IMAGENET1K_V1)}
    if arch not in builders:
        raise ValueError(f"unknown VGG arch {arch!r}; choose one of {sorted(builders)}")
    return builders[arch]


def imagenet_weights_file(arch: str = "vgg19") -> Path:
    """Where torchvision caches the ImageNet weights of ``arch`` (``vgg19-dcbb9e9d.pth``, ``vgg16-397923af.pth``)."""
    url = _torchvision(arch)[1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


OFFLINE_ENV = "CSMRI_OFFLINE"


def offline() -> bool:
    """``CSMRI_OFFLINE=1``: ImageNet weights come from torchvision's cache only, never downloaded (compute nodes
    without internet, where an attempt may hang; the test suite sets it so that nothing can download)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}


# weights file -> why its download failed, so that a process tries each download once (a sweep's every point, each
# VGG of a run) and warns about the stand-in once
_UNAVAILABLE: dict[Path, str] = {}
_WARNED: set[Path] = set()


def _build_vgg(arch: str, weights: str, seed: int, allow_random_fallback: bool) -> tuple[nn.Module, str]:
    build, imagenet = _torchvision(arch)
    if weights == "imagenet":
        expected, tried = imagenet_weights_file(arch), False
        try:
            if not expected.is_file():
                if offline():
                    raise FileNotFoundError(f"{OFFLINE_ENV}=1: no download attempted")
                if expected in _UNAVAILABLE:
                    raise FileNotFoundError(f"not downloaded again in this process ({_UNAVAILABLE[expected]})")
            tried = True
            return build(weights=imagenet), f"{arch}-imagenet"
        except Exception as err:  # URLError, OSError, hash mismatch, ...
            reason = f"{type(err).__name__}: {err}"
            if tried:
                _UNAVAILABLE.setdefault(expected, reason)
            message = (
                f"ImageNet {arch} weights could not be loaded ({reason}). Expected the file "
                f"{expected} (torchvision's cache; set TORCH_HOME to move it). Options: put "
                f"{expected.name} there (or run once with internet), set the perceptual weights to a local "
                "file path, or allow the seeded random stand-in (allow_random_fallback=true; its numbers are "
                "not comparable to ImageNet-VGG results)."
            )
            if not allow_random_fallback:
                raise PerceptualWeightsUnavailable(message) from err
            if expected not in _WARNED:
                _WARNED.add(expected)
                log.warning(
                    "NO IMAGENET %s: using the seeded random-weight stand-in %s-random (not comparable to ImageNet-VGG "
                    "results; %s). Put %s there to use ImageNet weights.",
                    arch.upper(), arch, _UNAVAILABLE.get(expected, reason), expected,
                )  # fmt: skip
            weights = "random"
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(weights=None), f"{arch}-random"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"perceptual weights must be 'imagenet', 'random' or a file path; {path} does not exist"
        )
    model = build(weights=None)
    if path.suffix == ".npz":
        _load_caffe_npz(model, path)
        return model, f"{arch}-npz:{path.name}"
    _load_torchvision_file(model, path, arch)
    return model, f"{arch}-file:{path.name}"


def _load_torchvision_file(model: nn.Module, path: Path, arch: str) -> None:
    """Load a torchvision ``arch`` state dict into ``model``: every ``features.*`` entry is required, the classifier's
    are optional (left at their initialisation: the extractor never runs the classifier)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing_features = [k for k in missing if k.startswith("features.")]
    if missing_features or unexpected:

        def first(keys: list[str]) -> str:
            return f"{keys[:4]}{' …' if len(keys) > 4 else ''}"

        raise KeyError(
            f"{path} is not a torchvision {arch} state dict: missing {first(missing_features)}, "
            f"unexpected {first(unexpected)}"
        )


def _load_caffe_npz(model: nn.Module, path: Path) -> None:
    """Load every conv layer of ``model.features`` from a TF-layout Caffe-VGG ``.npz`` (``convB_I_W`` HWIO, ``_b``)."""
    import numpy as np

    named: list[tuple[str, nn.Conv2d]] = []  # conv1_1, conv1_2, conv2_1, ...: a new block after each max-pool
    block, index = 1, 0
    for module in model.features:
        if isinstance(module, nn.MaxPool2d):
            block, index = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            index += 1
            named.append((f"conv{block}_{index}", module))
    with np.load(path) as npz:
        missing = [n for n, _ in named if f"{n}_W" not in npz or f"{n}_b" not in npz]
        if missing:
            raise KeyError(f"{path} lacks the conv layers {missing} (expected keys like conv1_1_W, conv1_1_b)")
        with torch.no_grad():
            for name, conv in named:
                conv.weight.copy_(torch.from_numpy(np.asarray(npz[f"{name}_W"])).permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(np.asarray(npz[f"{name}_b"])))


class VGGFeatures(nn.Module):
    """Magnitude images ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1] -> VGG feature maps at ``layer``.

    The magnitude is replicated to 3 channels and normalised with the ImageNet mean and std (torchvision's
    convention). ``features`` (the truncated ``vgg.features``) can also be called directly on inputs
    preprocessed otherwise (see :class:`csmri.losses.dagan.DAGANVGGFeatures`).
    ``backbone`` names the weights actually used: ``{arch}-imagenet``, ``{arch}-random`` or ``{arch}-file:…``.
    """

    def __init__(
        self,
        weights: str = "imagenet",
        layer: str = "relu5_4",
        allow_random_fallback: bool = False,
        seed: int = 0,
        arch: str = "vgg19",
    ) -> None:
        super().__init__()
        _torchvision(arch)  # validates arch
        layers = LAYERS_BY_ARCH[arch]
        if layer not in layers:
            raise ValueError(f"unknown {arch} layer {layer!r}; choose one of {sorted(layers)}")
        model, self.backbone = _build_vgg(arch, weights, seed, allow_random_fallback)
        self.arch = arch
        self.features = model.features[: layers[layer] + 1]
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._register_state_dict_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_keep_current_weights)
        super().train(False)

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always eval: frozen batch statistics-free network, no dropout

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        if magnitude.ndim == 3:
            magnitude = magnitude.unsqueeze(1)
        if magnitude.ndim != 4 or magnitude.shape[1] != 1:
            raise ValueError(f"VGGFeatures expects magnitudes (B, H, W) or (B, 1, H, W), got {tuple(magnitude.shape)}")
        rgb = magnitude.expand(-1, 3, -1, -1)
        return self.features((rgb - self.mean) / self.std)


def _drop_own_entries(module: nn.Module, state_dict: OrderedDict, prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _keep_current_weights(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    for name, tensor in module.features.state_dict().items():
        state_dict.setdefault(f"{prefix}features.{name}", tensor)
