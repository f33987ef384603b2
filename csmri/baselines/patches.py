"""Image patches for DLMRI: overlapping ``size x size`` patches of complex images as columns (extract), and their
(averaged) sum back onto the image grid (assemble). Images ``(B, H, W)`` complex or ``(B, C, H, W)`` real; every pixel
is covered (the last patch of each axis is added when the stride does not reach the edge)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_starts(length: int, size: int, stride: int) -> list[int]:
    """Start indices of patches along one axis: every ``stride``-th, plus the last so all pixels are covered."""
    if size > length:
        raise ValueError(f"patch size {size} exceeds image size {length}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def _patch_indices(shape: tuple[int, int], size: int, stride: int, device: torch.device) -> torch.Tensor:
    """Indices ``(P,)`` of the chosen patches among the stride-1 ``unfold`` columns, row-major."""
    height, width = shape
    rows = torch.tensor(patch_starts(height, size, stride), device=device)
    cols = torch.tensor(patch_starts(width, size, stride), device=device)
    return (rows[:, None] * (width - size + 1) + cols[None, :]).reshape(-1)


def _to_channels(image: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` real or complex -> real ``(B, C, H, W)`` with ``C = 1`` or ``2`` (re, im)."""
    if torch.is_complex(image):
        return torch.view_as_real(image).permute(0, 3, 1, 2)
    return image[:, None]


def _from_channels(x: torch.Tensor, complex_output: bool) -> torch.Tensor:
    """Inverse of :func:`_to_channels` on the channel dim 1: ``(B, C, ...)`` -> ``(B, ...)``."""
    if complex_output:
        return torch.complex(x[:, 0], x[:, 1])
    return x[:, 0]


def extract_patches(image: torch.Tensor, size: int, stride: int = 1) -> torch.Tensor:
    """Overlapping ``size x size`` patches of ``image (B, H, W)`` (real or complex) -> ``(B, size², P)``.

    Patch vectors are row-major within a patch; patches are ordered row-major by their top-left corner
    at :func:`patch_starts` positions (which always include the last row/column, so any ``H, W >= size``
    is fully covered).
    """
    if image.ndim != 3:
        raise ValueError(f"extract_patches expects (B, H, W), got {tuple(image.shape)}")
    channels = _to_channels(image)
    batch, n_channels = channels.shape[:2]
    columns = F.unfold(channels, kernel_size=size)  # (B, C n, L) at stride 1
    columns = columns.reshape(batch, n_channels, size * size, -1)
    selected = columns[..., _patch_indices(image.shape[-2:], size, stride, image.device)]
    return _from_channels(selected, torch.is_complex(image))


def patch_coverage(
    shape: tuple[int, int], size: int, stride: int = 1, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """How many patches cover each pixel: float32 ``(H, W)``, all ``>= 1``."""
    ones = torch.ones(
        1,
        size * size,
        len(patch_starts(shape[0], size, stride)) * len(patch_starts(shape[1], size, stride)),
        device=device,
    )
    return assemble_patches(ones, shape, size, stride, average=False)[0]


def assemble_patches(
    patches: torch.Tensor, shape: tuple[int, int], size: int, stride: int = 1, average: bool = True
) -> torch.Tensor:
    """Inverse of :func:`extract_patches`: ``(B, size², P)`` -> ``(B, H, W)``.

    Overlapping patches are summed, then (``average=True``) divided by the per-pixel coverage, so
    assembling unmodified patches returns the image.
    """
    shape = (int(shape[0]), int(shape[1]))
    channels = _to_channels(patches)  # (B, C, n, P)
    batch, n_channels = channels.shape[:2]
    n_columns = (shape[0] - size + 1) * (shape[1] - size + 1)
    full = channels.new_zeros(batch, n_channels, size * size, n_columns)
    full[..., _patch_indices(shape, size, stride, patches.device)] = channels
    summed = F.fold(full.reshape(batch, n_channels * size * size, n_columns), shape, kernel_size=size)
    if average:
        summed = summed / patch_coverage(shape, size, stride, patches.device)
    return _from_channels(summed, torch.is_complex(patches))
