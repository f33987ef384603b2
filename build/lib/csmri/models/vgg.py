"""Frozen VGG-19 feature extractor for the perceptual loss.

Weights (``weights=``):

- ``imagenet``: torchvision's ``VGG19_Weights.IMAGENET1K_V1`` through its standard weights API, so the
  torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``) and, with internet, the download
  work as usual. Offline and uncached this fails with a message naming the expected file — unless
  ``allow_random_fallback`` is set, in which case a seeded random network is used with a loud warning
  and :attr:`VGGFeatures.backbone` says ``vgg19-random`` (record it: numbers from it are not comparable).
- a path to a ``.pth`` state dict of torchvision's ``vgg19``;
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

log = logging.getLogger(__name__)

# index of each ReLU in torchvision's vgg19().features
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35, "conv5_4": 34}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsUnavailable(RuntimeError):
    """ImageNet VGG weights were requested but cannot be loaded (offline and not cached)."""


def imagenet_weights_file() -> Path:
    """Where torchvision caches the ImageNet VGG-19 weights."""
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _build_vgg19(weights: str, seed: int, allow_random_fallback: bool) -> tuple[nn.Module, str]:
    from torchvision.models import VGG19_Weights, vgg19

    if weights == "imagenet":
        try:
            return vgg19(weights=VGG19_Weights.IMAGENET1K_V1), "vgg19-imagenet"
        except Exception as err:  # URLError, OSError, hash mismatch, ...
            message = (
                f"ImageNet VGG-19 weights could not be loaded ({type(err).__name__}: {err}). Expected the file "
                f"{imagenet_weights_file()} (torchvision's cache; set TORCH_HOME to move it). Options: put "
                "vgg19-dcbb9e9d.pth there (or run once with internet), set the perceptual weights to a local "
                "file path, or allow the seeded random stand-in (allow_random_fallback=true; its numbers are "
                "not comparable to ImageNet-VGG results)."
            )
            if not allow_random_fallback:
                raise PerceptualWeightsUnavailable(message) from err
            log.warning("!" * 80 + "\n%s\nUSING A RANDOM-WEIGHT VGG-19 STAND-IN (vgg19-random).\n" + "!" * 80, message)
            weights = "random"
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return vgg19(weights=None), "vgg19-random"
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"perceptual weights must be 'imagenet', 'random' or a file path; {path} does not exist"
        )
    model = vgg19(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model, f"vgg19-file:{path.name}"


class VGGFeatures(nn.Module):
    """Magnitude images ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1] -> VGG-19 feature maps at ``layer``.

    The magnitude is replicated to 3 channels and normalised with the ImageNet mean and std.
    ``backbone`` names the weights actually used: ``vgg19-imagenet``, ``vgg19-random`` or ``vgg19-file:…``.
    """

    def __init__(
        self, weights: str = "imagenet", layer: str = "relu5_4", allow_random_fallback: bool = False, seed: int = 0
    ) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown VGG layer {layer!r}; choose one of {sorted(LAYERS)}")
        model, self.backbone = _build_vgg19(weights, seed, allow_random_fallback)
        self.features = model.features[: LAYERS[layer] + 1]
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
