"""Converting one raw case into normalised slices of the prepared layout (see :mod:`csmri.data.sources.folder`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csmri.data.scan_files import Volume, read_volume
from csmri.data.sources.folder.discovery import Case
from csmri.data.sources.folder.options import FolderOptions
from csmri.data.transforms import fit_to_size, normalise_slices, with_synthetic_phase
from csmri.errors import BadInputError, ConfigError

log = logging.getLogger(__name__)

__all__ = ["Slices", "load_case"]


@dataclass
class Slices:
    """A prepared case: ``image`` complex64 ``(S, H, W)`` normalised per slice, ``label`` uint8 0/1."""

    image: np.ndarray
    label: np.ndarray
    indices: list[int]
    native_size: tuple[int, int]
    stats: dict[str, float]
    dropped_empty: int
    label_values: set[int]


def load_case(options: FolderOptions, case: Case, size: tuple[int, int] | None) -> Slices:
    """Read, check and convert one case (see :mod:`csmri.data.sources.folder`); raises :class:`BadInputError`."""
    volume = read_volume(case.image, options.key)
    image = _as_stack(volume, options.axis)
    _check_finite(image, case.image)
    label, values = _load_label(options, case, volume)
    index = np.arange(image.shape[0])
    if options.slices is not None:
        index = index[slice(*options.slices)]
    if index.size == 0:
        raise BadInputError(case.image, f"no slice in range {options.slices} of {image.shape[0]} slices")
    image, label = image[index], label[index]
    if options.domain == "kspace":
        image = _kspace_to_image(image, case.image)
    if options.transpose:
        image, label = np.swapaxes(image, -1, -2), np.swapaxes(label, -1, -2)
    native = (int(image.shape[-2]), int(image.shape[-1]))
    target = options.size or size or native
    if options.size is None and native != target:
        raise BadInputError(
            case.image,
            f"in-plane size {native} differs from {target} of the other cases; "
            "set data.source.size to bring all slices to one size",
        )
    if target[0] % 2 or target[1] % 2:
        raise BadInputError(
            case.image,
            f"in-plane size {target} is odd; undersampling masks need an even "
            "size: set data.source.size (e.g. the next even size)",
        )
    magnitude = np.abs(image)
    stats = {
        "min": float(magnitude.min()),
        "max": float(magnitude.max()),
        "mean": float(magnitude.mean()),
        "p01": float(np.percentile(magnitude, 1)),
        "p99": float(np.percentile(magnitude, 99)),
    }
    image = fit_to_size(image, target, options.fit, order=1)
    label = fit_to_size(label, target, options.fit, order=0)
    if options.synthetic_phase and not np.iscomplexobj(image):
        image = with_synthetic_phase(image.astype(np.float32), options.seed, case.name, options.phase_scale)
    image, scale = normalise_slices(image.astype(np.complex128), options.normalise, options.percentile)
    keep = scale > 0 if options.drop_empty else np.ones(scale.shape, bool)
    if not keep.any():
        raise BadInputError(case.image, "every selected slice is all zero")
    return Slices(
        image=image[keep].astype(np.complex64),
        label=label[keep].astype(np.uint8),
        indices=[int(i) for i in index[keep]],
        native_size=native,
        stats=stats,
        dropped_empty=int((~keep).sum()),
        label_values=values,
    )


def _load_label(options: FolderOptions, case: Case, image: Volume) -> tuple[np.ndarray, set[int]]:
    shape = _stack_shape(image.data.shape, options.axis)
    if case.label is None:
        return np.zeros(shape, dtype=np.uint8), set()
    volume = read_volume(case.label, options.label_key)
    volume = _align_orientation(volume, image)
    if volume.data.shape != image.data.shape:
        raise BadInputError(
            case.label,
            f"label shape {volume.data.shape} differs from image shape {image.data.shape} of {case.image}",
        )
    data = volume.data
    if data.dtype.kind in "fc":
        _check_finite(data, case.label)
        if np.iscomplexobj(data) or not np.array_equal(data, np.round(data)):
            raise BadInputError(case.label, "label map has non-integer values")
    values = {int(v) for v in np.unique(data)}
    if options.structure is None:
        mask = data > 0
    else:
        mask = np.isin(data, options.structure)
        if not mask.any() and any(v != 0 for v in values):
            raise BadInputError(
                case.label,
                f"label values {options.structure} (data.source.structure) do not "
                f"occur; values present: {sorted(values)}",
            )
    return _as_stack(Volume(mask.astype(np.uint8), case.label), options.axis), values


def _stack_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    if len(shape) == 2:
        return (1, *shape)
    moved = list(shape)
    n = moved.pop(axis)
    return (n, *moved)


def _as_stack(volume: Volume, axis: int) -> np.ndarray:
    """``(S, H, W)``: 2-D data is one slice; 3-D data has ``axis`` moved first."""
    data = volume.data
    if data.ndim == 2:
        return data[None]
    if data.ndim != 3:
        raise BadInputError(volume.path, f"expected a 2-D image or a 3-D volume, got shape {data.shape}")
    if not -3 <= axis < 3:
        raise ConfigError(f"data.source.axis must be in [-3, 2] for 3-D volumes, got {axis}")
    return np.moveaxis(data, axis, 0)


def _check_finite(data: np.ndarray, path: Path) -> None:
    if data.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise BadInputError(path, f"{bad} NaN/Inf voxel(s) of {data.size}")


def _kspace_to_image(kspace: np.ndarray, path: Path) -> np.ndarray:
    import torch

    from csmri.physics import ifft2c

    if not np.iscomplexobj(kspace):
        raise BadInputError(path, "domain=kspace needs complex k-space data, got real values")
    return ifft2c(torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64))).numpy()


def _align_orientation(label: Volume, image: Volume) -> Volume:
    """Reorient a NIfTI label to its image's voxel axes when their affines' axis orders/flips differ."""
    if label.affine is None or image.affine is None or label.data.ndim != 3 or image.data.ndim != 3:
        return label
    from nibabel import orientations

    start, end = orientations.io_orientation(label.affine), orientations.io_orientation(image.affine)
    if np.array_equal(start, end):
        return label
    transform = orientations.ornt_transform(start, end)
    log.info("%s: reoriented to the voxel axes of %s", label.path, image.path)
    return Volume(orientations.apply_orientation(label.data, transform), label.path, image.affine)
