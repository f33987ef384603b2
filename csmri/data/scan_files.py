"""Readers for raw scan files: one function per format, all returning a :class:`Volume`.

Formats (by file name; a directory is a series): NIfTI ``.nii``/``.nii.gz`` (nibabel), NRRD
``.nrrd``/``.nhdr`` (pynrrd), HDF5 ``.h5``/``.hdf5`` (h5py), NumPy ``.npz``/``.npy``, DICOM ``.dcm`` or a
directory holding one DICOM series (pydicom), PNG and TIFF ``.png``/``.tif``/``.tiff`` (Pillow; a
multi-page TIFF or a directory of PNG/TIFF files is a stack of 2-D slices).

Axis conventions of :attr:`Volume.data` (the raw voxel array, never resampled or reoriented):

* NIfTI and NRRD: the stored voxel order ``(i, j, k)``, i.e. ``(x, y, z)`` for the usual axial scan, so
  slices are along the **last** axis; NIfTI also gives :attr:`Volume.affine` (voxel to world, 4x4).
* DICOM series, PNG/TIFF stacks: ``(rows, columns, slices)``; a DICOM series is sorted by the slice
  position along the normal of ``ImageOrientationPatient`` (else ``InstanceNumber``), with
  ``RescaleSlope``/``RescaleIntercept`` applied.
* HDF5, NPZ, NPY: as stored. 2-D images (one PNG, one DICOM slice) are ``(rows, columns)``.

dtypes are kept (bool, integer, float or complex); anything else (strings, records, objects) is refused. Every
failure to read is a :class:`BadInputError` whose message starts with the path. The optional packages are
imported lazily; a missing one is a :class:`csmri.errors.MissingPackageError` (an ``ImportError``) that names the
file and says ``pip install csmri[io]``.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from csmri.errors import BadInputError, MissingPackageError

log = logging.getLogger(__name__)

__all__ = [
    "EXTENSIONS",
    "BadInputError",
    "Volume",
    "check_finite",
    "is_scan_entry",
    "read_kspace",
    "read_volume",
    "split_extension",
]

# longest first, so ".nii.gz" wins over ".gz"
EXTENSIONS = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".hdf5",
    ".h5",
    ".npz",
    ".npy",
    ".dcm",
    ".png",
    ".tiff",
    ".tif",
)
_PICTURE_EXTENSIONS = (".png", ".tif", ".tiff")
_PACKAGES = {"nibabel": "nibabel", "nrrd": "pynrrd", "pydicom": "pydicom", "PIL": "pillow"}
NUMERIC_KINDS = "biufc"  # numpy dtype kinds read_volume accepts: bool, (unsigned) integer, float, complex


@dataclass
class Volume:
    """A raw array read from ``path``; ``affine`` is the NIfTI voxel-to-world matrix (else ``None``)."""

    data: np.ndarray
    path: Path
    affine: np.ndarray | None = None


def split_extension(name: str) -> tuple[str, str]:
    """``("case", ".nii.gz")`` for ``"case.nii.gz"``; the extension is lower-cased, ``""`` if unknown."""
    lower = name.lower()
    for ext in EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return name, ""


def is_scan_entry(path: Path) -> bool:
    """True for a non-hidden file with a known extension or directory: what :func:`read_volume` takes."""
    if path.name.startswith("."):
        return False
    return path.is_dir() or (path.is_file() and split_extension(path.name)[1] != "")


def _optional(module: str, what: str, path: Path) -> ModuleType:
    """``import module``, or a :class:`MissingPackageError` naming ``path`` and the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = _PACKAGES.get(module.split(".")[0], module)
        raise MissingPackageError(
            f"{path}: reading {what} needs the optional package {package!r}",
            f"pip install 'csmri[io]' (or pip install {package})",
        ) from err


def read_volume(path: str | Path, keys: Sequence[str] = ()) -> Volume:
    """Read a scan file or series directory (see the module docstring for axes).

    ``keys`` are the HDF5 dataset / NPZ array names to try in order; when none is present, a file holding a
    single array uses it. Raises :class:`BadInputError` (naming ``path``) for anything unreadable, empty or not
    numeric, and :class:`csmri.errors.MissingPackageError` (naming ``path``) when the format's package is missing.
    """
    path = Path(path)
    if path.is_dir():
        return _read_directory(path)
    if not path.is_file():
        raise BadInputError(path, "no such file")
    ext = split_extension(path.name)[1]
    reader = _READERS.get(ext)
    if reader is None:
        raise BadInputError(path, f"unknown file type; supported: {', '.join(EXTENSIONS)} or a DICOM folder")
    try:
        volume = reader(path, tuple(keys))
    except (BadInputError, MissingPackageError):
        raise
    except Exception as err:  # any parser failure: truncated, corrupt, wrong content
        raise BadInputError(path, f"cannot read {ext[1:].upper()} file ({_reason(err)})") from err
    _check_array(volume.data, path)
    return volume


def _reason(err: BaseException) -> str:
    """A parser's error as one line: ``Type: message`` (whitespace and line breaks collapsed)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _check_array(data: np.ndarray, path: Path) -> None:
    if data.dtype.kind not in NUMERIC_KINDS:
        raise BadInputError(path, f"holds values of type {data.dtype} (strings or records), not numbers")
    if data.size == 0:
        raise BadInputError(path, f"holds an empty array of shape {data.shape}")


def check_finite(data: np.ndarray, path: str | Path, what: str = "") -> None:
    """``data`` must hold numbers, all finite; else a :class:`BadInputError` naming ``path`` (and ``what``, e.g.
    ``"the mask"``)."""
    subject = f"{what} holds" if what else "holds"
    if data.dtype.kind not in NUMERIC_KINDS:
        raise BadInputError(
            path, f"{subject} values of type {data.dtype}, not numbers", "store real or complex numbers"
        )
    if data.dtype.kind in "fc":
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise BadInputError(path, f"{subject} {bad} NaN/Inf values", "replace or remove them first")


def read_kspace(path: str | Path) -> dict[str, np.ndarray] | None:
    """``{"kspace": ..., "mask": ...}`` (``mask`` when stored) of an HDF5/NPZ file that holds a ``kspace`` array,
    as stored (any shape and dtype); ``None`` for any other file. A file that cannot be read is a
    :class:`BadInputError` naming ``path``."""
    path = Path(path)
    ext = split_extension(path.name)[1]
    if ext not in (".h5", ".hdf5", ".npz") or not path.is_file():
        return None
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = archive.files
                return {k: archive[k] for k in ("kspace", "mask") if k in names} if "kspace" in names else None
        import h5py

        with h5py.File(path, "r") as f:
            if not isinstance(f.get("kspace"), h5py.Dataset):
                return None
            return {k: np.asarray(f[k][()]) for k in ("kspace", "mask") if isinstance(f.get(k), h5py.Dataset)}
    except Exception as err:  # any parser failure: truncated, corrupt, pickled objects
        raise BadInputError(path, f"cannot read {'NPZ' if ext == '.npz' else 'HDF5'} file ({_reason(err)})") from err


# -- single files -----------------------------------------------------------------------------------


def _read_nifti(path: Path, keys: tuple[str, ...]) -> Volume:
    nib = _optional("nibabel", "NIfTI", path)
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)  # reads (and decompresses) everything: truncation fails here
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return Volume(np.asarray(data), path, np.asarray(image.affine, dtype=np.float64))


def _read_nrrd(path: Path, keys: tuple[str, ...]) -> Volume:
    nrrd = _optional("nrrd", "NRRD", path)
    data, _ = nrrd.read(str(path))  # Fortran index order: (x, y, z), as NIfTI
    return Volume(np.asarray(data), path)


def _pick(available: Sequence[str], keys: tuple[str, ...], path: Path, kind: str, others: Sequence[str] = ()) -> str:
    """The array to read: the first of ``keys`` among ``available``, else the only one; ``others`` are the
    names skipped as scalars or not numeric (for the error message)."""
    if not available:
        skipped = f" (skipped as scalars or not numbers: {', '.join(sorted(others))})" if others else ""
        raise BadInputError(path, f"holds no numeric array among its {kind}{skipped}")
    for key in keys:
        if key in available:
            return key
    if len(available) == 1:
        return available[0]
    wanted = f"none of {list(keys)} found; " if keys else ""
    raise BadInputError(path, f"{wanted}cannot choose among its {kind} {sorted(available)} (set the key option)")


def _read_hdf5(path: Path, keys: tuple[str, ...]) -> Volume:
    import h5py

    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        arrays = [n for n in names if f[n].shape]  # skip scalars and strings such as ismrmrd_header
        arrays = [n for n in arrays if f[n].dtype.kind in NUMERIC_KINDS]
        key = _pick(arrays, keys, path, "datasets", [n for n in names if n not in arrays])
        if key == "kspace" and "mask" in f:
            raise BadInputError(
                path,
                "holds undersampled k-space (a 'mask' dataset: a fastMRI test/challenge file); "
                "use fully-sampled files (fastMRI train/val)",
            )
        data = f[key][()]
    return Volume(np.asarray(data), path)


def _read_npz(path: Path, keys: tuple[str, ...]) -> Volume:
    with np.load(path, allow_pickle=False) as archive:
        key = _pick(list(archive.files), keys, path, "arrays")
        data = archive[key]
    return Volume(np.asarray(data), path)


def _read_npy(path: Path, keys: tuple[str, ...]) -> Volume:
    return Volume(np.asarray(np.load(path, allow_pickle=False)), path)


def _picture_frames(path: Path) -> list[np.ndarray]:
    image_module = _optional("PIL.Image", "PNG/TIFF", path)
    sequence = _optional("PIL.ImageSequence", "PNG/TIFF", path)
    frames = []
    with image_module.open(path) as picture:
        for frame in sequence.Iterator(picture):
            frame.load()
            if frame.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                log.warning("%s: colour image (%s) converted to grayscale", path, frame.mode)
                frame = frame.convert("L")
            frames.append(np.array(frame))  # "P" keeps palette indices: right for label maps
    return frames


def _read_picture(path: Path, keys: tuple[str, ...]) -> Volume:
    frames = _picture_frames(path)
    data = frames[0] if len(frames) == 1 else np.stack(frames, axis=-1)
    return Volume(data, path)


def _read_dicom_file(path: Path, keys: tuple[str, ...]) -> Volume:
    pydicom = _optional("pydicom", "DICOM", path)
    ds = pydicom.dcmread(str(path))
    data = _dicom_pixels(ds)
    if data.ndim == 3:  # multi-frame: (frames, rows, cols) -> (rows, cols, frames)
        data = np.moveaxis(data, 0, -1)
    return Volume(data, path)


_READERS = {
    ".nii.gz": _read_nifti,
    ".nii": _read_nifti,
    ".nrrd": _read_nrrd,
    ".nhdr": _read_nrrd,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".npz": _read_npz,
    ".npy": _read_npy,
    ".png": _read_picture,
    ".tif": _read_picture,
    ".tiff": _read_picture,
    ".dcm": _read_dicom_file,
}


# -- series directories -----------------------------------------------------------------------------


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _read_directory(path: Path) -> Volume:
    files = sorted((p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise BadInputError(path, "empty folder (expected one DICOM series or a stack of PNG/TIFF slices)")
    if all(split_extension(p.name)[1] in _PICTURE_EXTENSIONS for p in files):
        slices = [_read_picture_checked(p) for p in files]
        return Volume(_stack(slices, files, path), path)
    return _read_dicom_series(path, [p for p in files if p.name.upper() != "DICOMDIR"])


def _read_picture_checked(path: Path) -> np.ndarray:
    data = read_volume(path).data
    if data.ndim != 2:
        raise BadInputError(path, f"a slice of a stack must be 2-D, got shape {data.shape}")
    return data


def _stack(slices: list[np.ndarray], files: list[Path], folder: Path) -> np.ndarray:
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        odd = next(f for f, s in zip(files, slices, strict=True) if s.shape != slices[0].shape)
        raise BadInputError(
            odd,
            f"slice shape {shapes - {slices[0].shape}} differs from {slices[0].shape} of {files[0].name} in {folder}",
        )
    return np.stack(slices, axis=-1)


def _dicom_pixels(ds: Any) -> np.ndarray:
    data = np.asarray(ds.pixel_array)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        data = data.astype(np.float32) * slope + intercept
    return data


def _slice_position(ds: Any) -> float | None:
    orientation = getattr(ds, "ImageOrientationPatient", None)
    position = getattr(ds, "ImagePositionPatient", None)
    if orientation is None or position is None:
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    return float(np.dot(np.cross(row, col), np.asarray(position, float)))


def _read_dicom_series(folder: Path, files: list[Path]) -> Volume:
    pydicom = _optional("pydicom", "DICOM", folder)
    entries = []
    for file in files:
        try:
            ds = pydicom.dcmread(str(file))
            pixels = _dicom_pixels(ds)
        except Exception as err:
            raise BadInputError(file, f"cannot read DICOM file ({_reason(err)})") from err
        if pixels.ndim != 2:
            raise BadInputError(file, f"expected one 2-D slice per file in a DICOM series, got {pixels.shape}")
        series = str(getattr(ds, "SeriesInstanceUID", ""))
        number = getattr(ds, "InstanceNumber", None)
        entries.append((file, pixels, series, _slice_position(ds), None if number is None else int(number)))
    series_ids = {e[2] for e in entries}
    if len(series_ids) > 1:
        raise BadInputError(folder, f"holds {len(series_ids)} DICOM series; put one series per folder")
    positions = [e[3] for e in entries]
    if all(p is not None for p in positions):
        if len(set(np.round(positions, 4))) != len(positions):
            raise BadInputError(folder, "several DICOM files share a slice position (mixed phases or echoes?)")
        entries.sort(key=lambda e: e[3])
    elif all(e[4] is not None for e in entries):
        entries.sort(key=lambda e: e[4])
    data = _stack([e[1] for e in entries], [e[0] for e in entries], folder)
    return Volume(data, folder)
