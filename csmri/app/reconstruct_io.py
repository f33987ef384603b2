"""Reading the inputs and writing the outputs of ``csmri reconstruct`` (see :mod:`csmri.app.reconstruct` for the
formats and conventions). Every file is read through :mod:`csmri.data.scan_files`."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csmri.data.scan_files import EXTENSIONS, check_finite, read_kspace, read_volume, split_extension
from csmri.errors import BadInputError, InferenceError, OutputError

log = logging.getLogger(__name__)

OUTPUT_FORMATS = (".nii.gz", ".nii", ".h5", ".hdf5", ".npz", ".png")
SLICE_FIRST = (".h5", ".hdf5", ".npz", ".npy")  # (S, H, W) as stored; other formats have slices last
IMAGE_KEYS = ("image", "data", "target", "reconstruction_esc", "reconstruction_rss")


# -- input ------------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """An input in csmri's orientation: ``kspace`` complex64 ``(S, H, W)`` centred, ``mask`` ``(S, H, W)`` 0/1,
    ``scale`` ``(S,)`` (the per-slice peak the network input was divided by) and how to lay results out again
    (with ``--pad``, ``kspace`` and ``mask`` are on the padded grid and ``crop`` recovers the input's region)."""

    kspace: np.ndarray
    mask: np.ndarray
    scale: np.ndarray
    squeeze: bool  # the input was a 2-D slice
    slices_last: bool  # the input had its slices on the last axis
    transposed: bool  # fastMRI: H and W swapped for the network
    affine: np.ndarray | None = None
    measured: bool = False  # measured k-space: normalised by its zero-filled peak (scale is 1)
    crop: tuple[slice, slice] | None = None  # --pad: where the input's (H, W) lies in the padded slices


def _fail(path: Path | str, message: str, hint: str) -> InferenceError:
    return InferenceError(f"{path}: {message}", hint)


def _checked(path: Path | str, array: np.ndarray, what: str) -> np.ndarray:
    """``array`` if it holds finite numbers (:func:`csmri.data.scan_files.check_finite`), else an
    :class:`InferenceError` naming ``path``."""
    try:
        check_finite(array, path, what)
    except BadInputError as err:
        raise InferenceError(str(err), err.hint) from err
    return array


def _read_mask(path: str) -> np.ndarray:
    mask_path = Path(path)
    if not mask_path.is_file() or not mask_path.name.lower().endswith(".npy"):
        raise _fail(mask_path, "no such .npy mask", "pass --mask FILE.npy with an (H, W) or (S, H, W) 0/1 array")
    try:
        mask = np.load(mask_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _fail(mask_path, f"cannot read the mask ({err})", "save it with numpy.save") from err
    return _checked(mask_path, mask, "the mask")


def _fit_mask(mask: np.ndarray, shape: tuple[int, int, int], path: Path, source: str) -> np.ndarray:
    """``mask`` ``(H, W)`` or ``(S, H, W)`` broadcast to ``shape = (S, H, W)`` as float32 0/1."""
    if np.iscomplexobj(mask) or mask.ndim not in (2, 3) or mask.shape[-2:] != shape[-2:]:
        raise _fail(
            path,
            f"mask of shape {mask.shape} does not fit slices of {shape[1]}x{shape[2]} ({shape[0]} slices)",
            f"give {source} as (H, W) = {shape[1:]} or (S, H, W) = {shape}",
        )
    if mask.ndim == 3 and mask.shape[0] != shape[0]:
        raise _fail(
            path, f"mask has {mask.shape[0]} slices, the input {shape[0]}", f"give {source} with {shape[0]} slices"
        )
    if not np.any(mask):
        raise _fail(path, "the mask samples nothing", "give a 0/1 mask with ones on the sampled lines")
    return np.broadcast_to(mask != 0, shape).astype(np.float32)


def read_kspace_input(path: Path, arrays: dict[str, Any], mask_arg: str | None) -> Scan:
    """Measured k-space (``arrays`` of :func:`csmri.data.scan_files.read_kspace`) and its mask as a :class:`Scan`."""
    kspace = np.asarray(arrays["kspace"])
    if kspace.ndim == 4:
        raise _fail(path, f"multi-coil k-space {kspace.shape} is not supported", "combine the coils first")
    if kspace.ndim not in (2, 3) or kspace.shape[-1] < 2:
        raise _fail(path, f"'kspace' must be (H, W) or (S, H, W), got {kspace.shape}", "store one slice per entry")
    if not np.iscomplexobj(kspace):
        raise _fail(path, "'kspace' is not complex", "store k-space as a complex array")
    _checked(path, kspace, "'kspace'")
    squeeze = kspace.ndim == 2
    kspace = kspace[None] if squeeze else kspace
    if mask_arg is not None:
        mask, source = _read_mask(mask_arg), "--mask"
    elif "mask" in arrays:
        mask, source = np.asarray(arrays["mask"]), "the 'mask' dataset"
    else:
        raise _fail(
            path,
            "holds k-space but no 'mask'",
            "add a 'mask' dataset (H, W) or (S, H, W), pass --mask FILE.npy, or give the fully-sampled image instead",
        )
    _checked(path, mask, "the mask")
    transposed = mask.ndim == 1  # fastMRI: a 1-D mask over the columns (phase encode) of (S, readout, PE)
    if transposed:
        if mask.shape[0] != kspace.shape[-1]:
            raise _fail(
                path, f"1-D mask of {mask.shape[0]} columns does not fit k-space {kspace.shape}", "check the file"
            )
        kspace = np.swapaxes(kspace, -1, -2)
        mask = np.broadcast_to(mask[:, None], kspace.shape[-2:])
    mask = _fit_mask(mask, kspace.shape, Path(mask_arg) if mask_arg else path, source)
    kspace = np.ascontiguousarray(kspace.astype(np.complex64)) * mask
    return Scan(kspace, mask, np.ones(kspace.shape[0]), squeeze, False, transposed, measured=True)


def _image_slices(path: Path) -> tuple[np.ndarray, bool, bool, np.ndarray | None]:
    """The image as ``(S, H, W)``, whether it was 2-D, whether slices were last, and its NIfTI affine."""
    try:
        volume = read_volume(path, IMAGE_KEYS)
    except BadInputError as err:
        raise InferenceError(str(err), "check --input (an image volume or slice, or k-space with a mask)") from err
    data = np.squeeze(volume.data) if volume.data.ndim > 3 else volume.data
    if data.ndim not in (2, 3):
        raise _fail(path, f"expected a 2-D slice or a 3-D volume, got shape {volume.data.shape}", "split it first")
    _checked(path, data, "the image")
    squeeze = data.ndim == 2
    slices_last = not squeeze and (path.is_dir() or split_extension(path.name)[1] not in SLICE_FIRST)
    if squeeze:
        data = data[None]
    elif slices_last:
        data = np.moveaxis(data, -1, 0)
    return data, squeeze, slices_last, volume.affine


def _mask_sampler(path: Path, args: argparse.Namespace, acquisition: dict[str, Any]) -> Any:
    """The checkpoint's recorded acquisition (``--acceleration`` overrides; 8x Gaussian when none is recorded)."""
    from csmri.physics.sampling import MaskSampler

    settings = {"acceleration": 8.0, "mask": "gaussian", "sample_n": None, "center_fraction": None}
    settings.update({k: acquisition[k] for k in settings if k in acquisition})
    if args.acceleration is not None:
        settings["acceleration"] = args.acceleration
    try:
        return MaskSampler(seed=args.seed, **settings)
    except ValueError as err:
        raise _fail(path, f"cannot draw masks ({err})", "change --acceleration") from err


def _grid(path: Path, shape: tuple[int, int], sampler: Any, model: Any, pad: bool) -> tuple[int, int]:
    """The ``(H, W)`` the slices are reconstructed at: ``shape`` itself, or with ``pad`` the smallest size, rounded
    up to a multiple of 2, 4, ..., 64 (a DAGAN generator's own size), that both the mask and the network take."""
    h, w = shape
    if not pad:
        try:
            sampler.check_shape(shape)
        except ValueError as err:
            if h % 2:
                raise _fail(
                    path,
                    f"slices of {h}x{w} have an odd number of phase-encode lines ({h})",
                    "crop or pad the slices to an even size, or pass --pad (zero-pads, then crops the result back)",
                ) from err
            raise _fail(path, f"cannot draw a mask for {h}x{w} slices ({err})", "change --acceleration") from err
        return shape
    fixed = model.fixed_size
    sizes = [fixed] if fixed and h <= fixed[0] and w <= fixed[1] else []
    sizes += [(-(-h // m) * m, -(-w // m) * m) for m in (2, 4, 8, 16, 32, 64)]
    for size in dict.fromkeys(sizes):
        try:
            sampler.check_shape(size)
            model.check_size(size, str(path))
        except ValueError:  # InferenceError too
            continue
        return size
    raise _fail(path, f"no padded size of {h}x{w} slices fits the mask and the network", "crop or resample them")


def read_image_input(path: Path, args: argparse.Namespace, model: Any) -> Scan:
    """A fully-sampled image, normalised per slice, (zero-padded with ``args.pad``), and undersampled."""
    import torch

    from csmri.data.layout import normalise_max_magnitude, slice_peaks
    from csmri.physics import fft2c

    data, squeeze, slices_last, affine = _image_slices(path)
    image = data.astype(np.complex64 if np.iscomplexobj(data) else np.float32)
    scale = slice_peaks(image)
    image = normalise_max_magnitude(image).astype(np.complex64)
    n, h, w = image.shape
    sampler = None if args.mask is not None else _mask_sampler(path, args, model.acquisition)
    if args.mask is not None:
        mask = _fit_mask(_read_mask(args.mask), (n, h, w), Path(args.mask), "--mask")
        crop = None
    else:
        hp, wp = _grid(path, (h, w), sampler, model, args.pad)
        top, left = (hp - h) // 2, (wp - w) // 2
        crop = (slice(top, top + h), slice(left, left + w)) if (hp, wp) != (h, w) else None
        if crop:
            image = np.pad(image, ((0, 0), (top, hp - h - top), (left, wp - w - left)))
        mask = np.stack([sampler.evaluation_mask(str(i), (hp, wp))[0].numpy() for i in range(n)])
    kspace = (fft2c(torch.from_numpy(image)) * torch.from_numpy(mask)).numpy()
    return Scan(kspace, mask, np.asarray(scale, dtype=np.float64), squeeze, slices_last, False, affine, crop=crop)


def read_input(path: Path, args: argparse.Namespace, model: Any) -> Scan:
    """The scan at ``path`` (a file or a series folder) for ``model``, a
    :class:`csmri.inference.TrainedReconstructor`."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file", "check --input")
    if path.is_file() and split_extension(path.name)[1] not in EXTENSIONS:
        raise _fail(path, "unsupported input format", f"give one of {', '.join(EXTENSIONS)} (or a DICOM/PNG folder)")
    try:
        arrays = read_kspace(path)
    except BadInputError as err:
        raise InferenceError(str(err), "check the file") from err
    if arrays is not None:
        return read_kspace_input(path, arrays, args.mask)
    return read_image_input(path, args, model)


# -- output -----------------------------------------------------------------------------------------------------


def output_extension(out: Path) -> str:
    if out.is_dir():
        raise _fail(out, "is a folder", f"name an output file, e.g. --out {out / 'reconstruction.nii.gz'}")
    ext = split_extension(out.name)[1]
    if ext not in OUTPUT_FORMATS:
        raise _fail(out, "unsupported output format", f"name the output {', '.join('*' + e for e in OUTPUT_FORMATS)}")
    return ext


def mask_path(out: Path) -> Path:
    """``<out stem>_mask.npy`` next to ``out``."""
    return out.with_name(f"{split_extension(out.name)[0]}_mask.npy")


def to_input_layout(volume: np.ndarray, scan: Scan) -> np.ndarray:
    """``(S, H, W)`` results -> the input's layout (transposed back, slices last, a 2-D slice squeezed)."""
    if scan.transposed:
        volume = np.swapaxes(volume, -1, -2)
    if scan.squeeze:
        return volume[0]
    return np.moveaxis(volume, 0, -1) if scan.slices_last else volume


def _preview_grid(magnitude: np.ndarray) -> np.ndarray:
    """Slices ``(S, H, W)`` -> one 8-bit image, slices tiled row by row, scaled to the volume's maximum."""
    n, h, w = magnitude.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = magnitude[i]
    peak = float(grid.max()) or 1.0
    return np.clip(np.round(grid / peak * 255), 0, 255).astype(np.uint8)


def write_output(out: Path, ext: str, image: np.ndarray, scan: Scan, input_path: Path, keep_complex: bool) -> None:
    """Write ``image`` (complex ``(S, H, W)``) to ``out`` atomically (a temporary file, then ``os.replace``);
    an :class:`csmri.errors.OutputError` naming ``out`` when it cannot be written."""
    data = image if keep_complex and ext != ".png" else np.abs(image).astype(np.float32)
    if keep_complex and ext == ".png":
        log.warning("--complex: PNG holds magnitudes only; writing the magnitude preview")
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}{ext}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".png":
            from PIL import Image

            slices = data if not scan.transposed else np.swapaxes(data, -1, -2)
            Image.fromarray(_preview_grid(slices)).save(tmp, format="PNG")
        else:
            laid_out = to_input_layout(data, scan)
            if ext in (".nii.gz", ".nii"):
                _write_nifti(tmp, laid_out, input_path, scan.affine)
            elif ext in (".h5", ".hdf5"):
                import h5py

                with h5py.File(tmp, "w") as f:
                    f.create_dataset("reconstruction", data=laid_out, compression="gzip")
            else:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, reconstruction=laid_out)
        os.replace(tmp, out)
    except OSError as err:
        raise OutputError(f"{out}: cannot write ({err})", "check the folder is writable and has space") from err
    finally:
        tmp.unlink(missing_ok=True)


def _write_nifti(path: Path, data: np.ndarray, input_path: Path, affine: np.ndarray | None) -> None:
    import nibabel as nib

    header = None
    if split_extension(input_path.name)[1] in (".nii.gz", ".nii"):
        source = nib.load(str(input_path))
        header, affine = source.header.copy(), source.affine
    image = nib.Nifti1Image(data, affine if affine is not None else np.eye(4), header=header)
    image.set_data_dtype(data.dtype)
    if header is not None:  # the input's intensity scaling would rescale the reconstruction
        image.header.set_slope_inter(1.0, 0.0)
    nib.save(image, str(path))


def save_mask(path: Path, mask: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}.npy")
    try:
        np.save(tmp, mask.astype(np.float32))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
