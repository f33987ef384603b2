"""Per-slice array transforms used when preparing raw scans: size fitting, intensity normalisation, phase.

Conventions
-----------
* Slices are numpy arrays whose **last two axes** are the in-plane ``(H, W)`` = (rows, columns); any
  leading axes (e.g. slices ``S``) are carried along. Images are real or complex; labels are integer.
* Centre alignment follows the centred-FFT convention of :mod:`csmri.physics`: cropping or padding a
  length ``n`` to ``t`` keeps index ``n // 2`` at index ``t // 2`` (the k-space DC position), so
  ``crop_or_pad(crop_or_pad(x, t), n) == x`` whenever ``t >= n``.
* Interpolating resizes align pixel *centres* (``align_corners=False``): output pixel ``i`` samples input
  coordinate ``(i + 0.5) * n / t - 0.5``; labels use nearest neighbour, images linear (real and imaginary
  parts separately).
* Normalisation maps each slice to maximum magnitude exactly 1 (an all-zero slice is left at 0), the
  convention of the dataset layout (:func:`csmri.data.layout.normalise_max_magnitude`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from csmri.data.layout import scale_slices, slice_peaks
from csmri.physics.seeding import derive_seed

__all__ = [
    "FIT_MODES",
    "NORMALISATIONS",
    "crop_or_pad",
    "fit_to_size",
    "normalise_slices",
    "resize",
    "smooth_phase",
    "with_synthetic_phase",
]

FIT_MODES = ("crop_pad", "resize", "resize_pad")
NORMALISATIONS = ("max", "percentile")


def _as_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(s) for s in size)
    return height, width


def crop_or_pad(array: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Centre-crop and/or zero-pad the last two axes to ``size = (H, W)`` (no interpolation).

    Index ``n // 2`` of each axis ends up at ``t // 2`` (see the module conventions). Returns a new array
    of the input dtype.
    """
    target = _as_size(size)
    if min(target) < 1:
        raise ValueError(f"size must be positive, got {target}")
    out = array
    for axis, t in zip((-2, -1), target, strict=True):
        n = out.shape[axis]
        if n > t:
            start = n // 2 - t // 2
            out = np.take(out, np.arange(start, start + t), axis=axis)
        elif n < t:
            before = t // 2 - n // 2
            widths = [(0, 0)] * out.ndim
            widths[axis] = (before, t - n - before)
            out = np.pad(out, widths)
    return np.array(out, copy=True)


def resize(array: np.ndarray, size: int | Sequence[int], order: int = 1) -> np.ndarray:
    """Interpolate the last two axes to ``size = (H, W)``; ``order`` 0 = nearest (labels), 1 = linear.

    Pixel centres are aligned (``align_corners=False``) and edges are extended (``mode="nearest"``), so a
    constant image stays constant and resizing to the current size is the identity. Complex inputs are
    resized part by part.
    """
    target = _as_size(size)
    if min(target) < 1:
        raise ValueError(f"size must be positive, got {target}")
    if np.iscomplexobj(array):
        return resize(array.real, target, order) + 1j * resize(array.imag, target, order)
    if tuple(array.shape[-2:]) == target:
        return np.array(array, copy=True)
    lead = array.shape[:-2]
    flat = array.reshape(-1, *array.shape[-2:])
    scale = [n / t for n, t in zip(array.shape[-2:], target, strict=True)]
    offset = [0.5 * s - 0.5 for s in scale]
    work_dtype = array.dtype if order == 0 else np.result_type(array.dtype, np.float32)
    out = np.empty((flat.shape[0], *target), dtype=work_dtype)
    for i, plane in enumerate(flat):
        out[i] = ndimage.affine_transform(
            plane.astype(work_dtype, copy=False),
            scale,
            offset=offset,
            output_shape=target,
            order=order,
            mode="nearest",
            prefilter=False,
        )
    return out.reshape(*lead, *target)


def fit_to_size(array: np.ndarray, size: int | Sequence[int], mode: str = "crop_pad", order: int = 1) -> np.ndarray:
    """Bring the last two axes to ``size`` with ``mode``:

    * ``crop_pad``: centre crop / zero pad, no interpolation (keeps the native pixel grid);
    * ``resize``: interpolate to exactly ``size`` (the aspect ratio may change);
    * ``resize_pad``: interpolate keeping the aspect ratio so the slice fits inside ``size``, then pad.
    """
    target = _as_size(size)
    if mode == "crop_pad":
        return crop_or_pad(array, target)
    if mode == "resize":
        return resize(array, target, order)
    if mode == "resize_pad":
        height, width = array.shape[-2:]
        scale = min(target[0] / height, target[1] / width)
        inner = (min(target[0], max(1, round(height * scale))), min(target[1], max(1, round(width * scale))))
        return crop_or_pad(resize(array, inner, order), target)
    raise ValueError(f"fit must be one of {FIT_MODES}, got {mode!r}")


def normalise_slices(image: np.ndarray, method: str = "max", percentile: float = 99.5) -> tuple[np.ndarray, np.ndarray]:
    """Normalise each slice (last two axes) of a real or complex ``image`` to maximum magnitude 1.

    * ``max`` (the paper): divide by the slice's maximum magnitude.
    * ``percentile``: divide by the slice's ``percentile``-th magnitude percentile and clip magnitudes
      above 1 to 1, keeping the phase (robust to a few hot voxels); the maximum is then exactly 1 too.

    All-zero slices are returned unchanged. Returns ``(normalised, scale)`` with one scale per slice
    (shape ``image.shape[:-2]``; 0 for all-zero slices). The phase (angle) of every voxel is preserved.
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {method!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    peak = slice_peaks(image)
    if method == "max":
        scale = peak
    else:
        flat = np.abs(image).reshape(*image.shape[:-2], -1)
        scale = np.percentile(flat, percentile, axis=-1)
        scale = np.where(scale > 0, scale, peak)  # sparse slices: fall back to the maximum
    if method == "max":
        return scale_slices(image, scale), np.asarray(scale, dtype=np.float64)
    # divided in double precision: a voxel far above the percentile may exceed float32's range before clipping
    dtype = np.result_type(image.dtype, np.float32)
    out = scale_slices(image.astype(np.result_type(dtype, np.float64)), scale)
    over = np.abs(out) > 1
    if over.any():
        out = np.where(over, out / np.where(over, np.abs(out), 1), out)
    return out.astype(dtype), np.asarray(scale, dtype=np.float64)


def smooth_phase(shape: Sequence[int], rng: np.random.Generator, scale: float = math.pi) -> np.ndarray:
    """A smooth random phase map (radians, float32) of ``shape = (..., H, W)``.

    A quadratic polynomial in normalised in-plane coordinates ``x, y`` in ``[-1, 1]`` whose six
    coefficients drift linearly over the leading (slice) axis, like the background phase of a real
    acquisition; values are roughly within ``[-scale, scale]``.
    """
    *lead, height, width = (int(s) for s in shape)
    n = int(np.prod(lead)) if lead else 1
    y, x = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y])  # (6, H, W)
    start = rng.uniform(-1, 1, size=6) * scale / 3
    drift = rng.uniform(-1, 1, size=6) * scale / 6
    t = np.linspace(-1, 1, n) if n > 1 else np.zeros(1)
    coefficients = start[None, :] + t[:, None] * drift[None, :]  # (n, 6)
    phase = np.einsum("nk,khw->nhw", coefficients, basis).astype(np.float32)
    return phase.reshape(*lead, height, width)


def with_synthetic_phase(magnitude: np.ndarray, seed: int, case: str, scale: float = math.pi) -> np.ndarray:
    """``magnitude * exp(i * smooth_phase)`` (complex64) with a phase seeded by ``(seed, case)`` only."""
    rng = np.random.default_rng(derive_seed("synthetic_phase", int(seed), str(case)))
    phase = smooth_phase(magnitude.shape, rng, scale)
    return (magnitude * np.exp(1j * phase)).astype(np.complex64)
