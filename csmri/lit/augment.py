"""Standard intensity augmentation of magnitude images for the segmentation nets (the kinds nnU-Net applies).

Each transform is applied to each training slice independently with its own probability, in this order: Gaussian
noise, Gaussian blur, simulated low resolution, brightness, contrast, gamma. Images are ``(B, 1, H, W)`` float
magnitudes (``>= 0``, ground truth with max 1 per slice); labels are untouched — these transforms change how a
slice looks, never where the structure is. They see fully-sampled images only, never a reconstruction of any
method.

Ranges (nnU-Net's defaults for 2-D, in csmri's units):

* noise: additive white Gaussian noise of std ``U(noise_std)`` times the slice's std;
* blur: Gaussian blur of std ``U(blur_sigma)`` pixels (both axes);
* low resolution: downsample by ``U(low_resolution_zoom)`` (nearest) and back up (bilinear);
* brightness: multiply by ``U(brightness)``;
* contrast: scale about the slice's mean by ``U(contrast)``, clipped to the slice's former range;
* gamma: ``x -> x_max (x / x_max) ** U(gamma)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class IntensityAugment:
    """Probabilities (per slice) and ranges ``[low, high]`` of the transforms; probability 0 switches one off."""

    noise_p: float = 0.1
    noise_std: tuple[float, float] = (0.0, 0.3)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    low_resolution_p: float = 0.25
    low_resolution_zoom: tuple[float, float] = (0.5, 1.0)
    brightness_p: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    contrast_p: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    gamma_p: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_p"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"intensity_augment.{name} is a probability in [0, 1], got {value}")
                continue
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise ValueError(f"intensity_augment.{name} must be a range [low, high], 0 <= low <= high, got {value}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))  # lists from YAML

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch ``(B, 1, H, W)`` of magnitudes; returns a new float32 tensor (``x`` is not modified)."""
        b = x.shape[0]

        def chosen(p: float) -> Tensor:
            return torch.rand(b, generator=generator, device=x.device) < p

        def uniform(low_high: tuple[float, float]) -> Tensor:
            low, high = low_high
            return (low + (high - low) * torch.rand(b, generator=generator, device=x.device)).view(b, 1, 1, 1)

        x = x.float()
        where = chosen(self.noise_p).view(b, 1, 1, 1)
        std = uniform(self.noise_std) * x.std(dim=(1, 2, 3), keepdim=True)
        noise = torch.randn(x.shape, generator=generator, device=x.device) * std
        x = torch.where(where, x + noise, x)
        for i in chosen(self.blur_p).nonzero().flatten().tolist():
            x[i] = gaussian_blur(x[i : i + 1], float(uniform(self.blur_sigma)[0]))[0]
        for i in chosen(self.low_resolution_p).nonzero().flatten().tolist():
            x[i] = low_resolution(x[i : i + 1], float(uniform(self.low_resolution_zoom)[0]))[0]
        x = torch.where(chosen(self.brightness_p).view(b, 1, 1, 1), x * uniform(self.brightness), x)
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        contrasted = torch.minimum(torch.maximum((x - mean) * uniform(self.contrast) + mean, lo), hi)
        x = torch.where(chosen(self.contrast_p).view(b, 1, 1, 1), contrasted, x)
        peak = x.clamp_min(0).amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        gamma = peak * (x.clamp_min(0) / peak) ** uniform(self.gamma)
        return torch.where(chosen(self.gamma_p).view(b, 1, 1, 1), gamma, x)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with std ``sigma`` pixels (kernel radius ``ceil(3 sigma)``,
    reflect padding)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    rows, cols = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), rows, groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), cols, groups=c)


def low_resolution(x: Tensor, zoom: float) -> Tensor:
    """Downsample ``(B, C, H, W)`` by ``zoom`` (nearest) and upsample back to ``(H, W)`` (bilinear)."""
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h * zoom)), max(1, round(w * zoom))), mode="nearest")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
