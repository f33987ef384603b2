"""`csmri reconstruct`: reconstruct a scan with a trained checkpoint (README: "Reconstruct your own data").

Two kinds of input:

* a **fully-sampled image** (a slice or a volume, any format of :func:`csmri.data.scan_files.read_volume`):
  undersampled retrospectively, one mask per slice drawn with the checkpoint's recorded acquisition (mask type,
  acceleration, centre lines; ``--acceleration`` overrides; 8 and the Gaussian mask when the checkpoint predates
  the record) seeded by ``(--seed, slice index)``, or the masks of ``--mask``;
* **measured k-space**: an HDF5/NPZ file with ``kspace`` (centred, single-coil, ``(S, H, W)`` or ``(H, W)``
  complex) and ``mask`` (``(H, W)`` or ``(S, H, W)``), reconstructed without drawing a mask. A fastMRI single-coil
  file (``kspace`` ``(S, 640 readout, 368 phase encode)`` + a 1-D ``mask`` over its columns) is recognised by
  its 1-D mask: fastMRI's k-space is centred with the same orthonormal ``fftshift(ifft2(ifftshift(k)))`` as
  :func:`csmri.physics.ifft2c`, but it undersamples **columns** while csmri undersamples rows, so each slice is
  transposed (phase encode onto H), the 1-D mask expanded to full lines, and the result transposed back.

Slices: NIfTI/NRRD/DICOM/picture stacks are ``(..., slices)`` (slices along the last axis); HDF5/NPZ/NPY are
``(slices, H, W)``. Intensities: each slice is scaled to maximum magnitude 1 (the training normalisation,
:func:`csmri.data.layout.normalise_max_magnitude`) and the output scaled back. The mask used is written as
``<out stem>_mask.npy`` (``(H, W)`` for a slice, ``(S, H, W)`` for a volume).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csmri.errors import OutputError
from csmri.inference import InferenceError

log = logging.getLogger(__name__)

OUTPUT_FORMATS = (".nii.gz", ".nii", ".h5", ".hdf5", ".npz", ".png")
SLICE_FIRST = (".h5", ".hdf5", ".npz", ".npy")  # (S, H, W) as stored; other formats have slices last
IMAGE_KEYS = ("image", "data", "target", "reconstruction_esc", "reconstruction_rss")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csmri reconstruct",
        description=(
            "Reconstruct a fully-sampled image (undersampled retrospectively) or measured single-coil k-space with "
            "a trained csmri checkpoint (stage 1, stage 2, DAGAN or joint). Intensities: every input slice is "
            "scaled to maximum magnitude 1, as in training, and the output is scaled back to the input's units."
        ),
        epilog=(
            "Inputs: NIfTI, NRRD, DICOM, PNG/TIFF, HDF5, NPZ, NPY images (slices along the last axis, HDF5/NPZ/NPY "
            "along the first); HDF5/NPZ with centred 'kspace' (S,H,W) and 'mask' (H,W)/(S,H,W), or fastMRI "
            "single-coil files. Outputs by extension: .nii.gz/.nii (keeps a NIfTI input's affine and header), .h5, "
            ".npz, .png (magnitude preview, a grid for a volume). The mask used is written to <out stem>_mask.npy."
        ),
    )
    parser.add_argument("--ckpt", required=True, help="a csmri reconstruction checkpoint (.ckpt)")
    parser.add_argument("--input", required=True, help="image volume/slice, or k-space file (.h5/.npz)")
    parser.add_argument("--out", required=True, help=f"output file: {', '.join(OUTPUT_FORMATS)}")
    parser.add_argument(
        "--acceleration",
        type=float,
        default=None,
        help="undersampling factor for image inputs (default: the checkpoint's, else 8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="mask seed for image inputs (default 0)")
    parser.add_argument("--mask", default=None, help="a .npy mask (H,W) or (S,H,W) instead of drawing one")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="network precision (default 32)")
    parser.add_argument("--complex", action="store_true", help="write the complex image (.nii/.h5/.npz)")
    return parser


# -- input ------------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """An input in csmri's orientation: ``kspace`` complex64 ``(S, H, W)`` centred, ``mask`` ``(S, H, W)`` 0/1,
    ``scale`` ``(S,)`` (the per-slice peak the network input was divided by) and how to lay results out again."""

    kspace: np.ndarray
    mask: np.ndarray
    scale: np.ndarray
    squeeze: bool  # the input was a 2-D slice
    slices_last: bool  # the input had its slices on the last axis
    transposed: bool  # fastMRI: H and W swapped for the network
    affine: np.ndarray | None = None
    measured: bool = False  # measured k-space: normalised by its zero-filled peak (scale is 1)


def _fail(path: Path | str, message: str, hint: str) -> InferenceError:
    return InferenceError(f"{path}: {message}", hint)


def _check_finite(path: Path, array: np.ndarray, what: str) -> None:
    """``array`` must hold numbers, all finite; else an :class:`InferenceError` naming ``path``."""
    if array.dtype.kind not in "biufc":
        raise _fail(path, f"{what} holds values of type {array.dtype}, not numbers", "store real or complex numbers")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise _fail(path, f"{what} holds {bad} NaN/Inf values", "replace or remove them before reconstructing")


def _read_arrays(path: Path) -> dict[str, Any] | None:
    """``{name: lazy array}`` of an HDF5/NPZ file holding ``kspace``, else ``None`` (not a k-space file)."""
    ext = path.name.lower()
    if ext.endswith((".h5", ".hdf5")):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "kspace" not in f:
                    return None
                return {k: f[k][()] for k in ("kspace", "mask") if k in f}
        except Exception as err:  # any parser failure: truncated, corrupt
            raise _fail(path, f"cannot read HDF5 file ({type(err).__name__}: {err})", "check the file") from err
    if ext.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "kspace" not in archive.files:
                    return None
                return {k: archive[k] for k in ("kspace", "mask") if k in archive.files}
        except Exception as err:  # any parser failure: truncated, corrupt, pickled objects
            raise _fail(path, f"cannot read NPZ file ({type(err).__name__}: {err})", "check the file") from err
    return None


def _read_mask(path: str) -> np.ndarray:
    mask_path = Path(path)
    if not mask_path.is_file() or not mask_path.name.lower().endswith(".npy"):
        raise _fail(mask_path, "no such .npy mask", "pass --mask FILE.npy with an (H, W) or (S, H, W) 0/1 array")
    try:
        mask = np.load(mask_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _fail(mask_path, f"cannot read the mask ({err})", "save it with numpy.save") from err
    _check_finite(mask_path, mask, "the mask")
    return mask


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
    kspace = np.asarray(arrays["kspace"])
    if kspace.ndim == 4:
        raise _fail(path, f"multi-coil k-space {kspace.shape} is not supported", "combine the coils first")
    if kspace.ndim not in (2, 3) or kspace.shape[-1] < 2:
        raise _fail(path, f"'kspace' must be (H, W) or (S, H, W), got {kspace.shape}", "store one slice per entry")
    if not np.iscomplexobj(kspace):
        raise _fail(path, "'kspace' is not complex", "store k-space as a complex array")
    _check_finite(path, kspace, "'kspace'")
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
    _check_finite(path, mask, "the mask")
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
    from csmri.data.scan_files import BadInputError, read_volume, split_extension

    try:
        volume = read_volume(path, IMAGE_KEYS)
    except BadInputError as err:
        raise InferenceError(str(err), "check --input (an image volume or slice, or k-space with a mask)") from err
    data = np.squeeze(volume.data) if volume.data.ndim > 3 else volume.data
    if data.ndim not in (2, 3):
        raise _fail(path, f"expected a 2-D slice or a 3-D volume, got shape {volume.data.shape}", "split it first")
    _check_finite(path, data, "the image")
    squeeze = data.ndim == 2
    slices_last = not squeeze and (path.is_dir() or split_extension(path.name)[1] not in SLICE_FIRST)
    if squeeze:
        data = data[None]
    elif slices_last:
        data = np.moveaxis(data, -1, 0)
    return data, squeeze, slices_last, volume.affine


def read_image_input(path: Path, args: argparse.Namespace, acquisition: dict[str, Any]) -> Scan:
    import torch

    from csmri.data.layout import normalise_max_magnitude, slice_peaks
    from csmri.physics import fft2c
    from csmri.physics.sampling import MaskSampler

    data, squeeze, slices_last, affine = _image_slices(path)
    image = data.astype(np.complex64 if np.iscomplexobj(data) else np.float32)
    scale = slice_peaks(image)
    image = normalise_max_magnitude(image).astype(np.complex64)
    n, h, w = image.shape
    if args.mask is not None:
        mask = _fit_mask(_read_mask(args.mask), (n, h, w), Path(args.mask), "--mask")
    else:
        settings = {"acceleration": 8.0, "mask": "gaussian", "sample_n": None, "center_fraction": None}
        settings.update({k: acquisition[k] for k in settings if k in acquisition})
        if args.acceleration is not None:
            settings["acceleration"] = args.acceleration
        try:
            sampler = MaskSampler(seed=args.seed, **settings)
            sampler.check_shape((h, w))
        except ValueError as err:
            raise _fail(path, f"cannot draw a mask for {h}x{w} slices ({err})", "change --acceleration") from err
        mask = np.stack([sampler.evaluation_mask(str(i), (h, w))[0].numpy() for i in range(n)])
    kspace = (fft2c(torch.from_numpy(image)) * torch.from_numpy(mask)).numpy()
    return Scan(kspace, mask, np.asarray(scale, dtype=np.float64), squeeze, slices_last, False, affine)


def read_input(args: argparse.Namespace, acquisition: dict[str, Any]) -> Scan:
    from csmri.data.scan_files import EXTENSIONS, split_extension

    path = Path(args.input)
    if not path.exists():
        raise _fail(path, "no such file", "check --input")
    if path.is_file() and split_extension(path.name)[1] not in EXTENSIONS:
        raise _fail(path, "unsupported input format", f"give one of {', '.join(EXTENSIONS)} (or a DICOM/PNG folder)")
    arrays = _read_arrays(path) if path.is_file() else None
    if arrays is not None:
        return read_kspace_input(path, arrays, args.mask)
    return read_image_input(path, args, acquisition)


# -- output -----------------------------------------------------------------------------------------------------


def output_extension(out: Path) -> str:
    from csmri.data.scan_files import split_extension

    if out.is_dir():
        raise _fail(out, "is a folder", f"name an output file, e.g. --out {out / 'reconstruction.nii.gz'}")
    ext = split_extension(out.name)[1]
    if ext not in OUTPUT_FORMATS:
        raise _fail(out, "unsupported output format", f"name the output {', '.join('*' + e for e in OUTPUT_FORMATS)}")
    return ext


def mask_path(out: Path) -> Path:
    """``<out stem>_mask.npy`` next to ``out``."""
    from csmri.data.scan_files import split_extension

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

    from csmri.data.scan_files import split_extension

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


# -- command ----------------------------------------------------------------------------------------------------


def reconstruct(args: argparse.Namespace) -> Path:
    """Run ``csmri reconstruct`` for parsed ``args``; returns the output path."""
    import torch

    from csmri.inference import load

    out = Path(args.out)
    ext = output_extension(out)
    if args.batch_size < 1:
        raise InferenceError(f"--batch-size must be >= 1, got {args.batch_size}", "pass a positive number")
    model = load(args.ckpt, device=args.device, precision=args.precision, batch_size=args.batch_size)
    scan = read_input(args, model.acquisition)
    model.check_size(scan.kspace.shape[-2:], str(args.input))
    kspace, mask = torch.from_numpy(scan.kspace), torch.from_numpy(scan.mask)
    # image inputs are already at peak 1; measured k-space is normalised by its zero-filled peak in reconstruct()
    recon = model.reconstruct(kspace, mask, normalise=scan.measured, progress=True).numpy()
    recon = recon * scan.scale[:, None, None].astype(np.float32)
    write_output(out, ext, recon.astype(np.complex64), scan, Path(args.input), args.complex)
    save_mask(mask_path(out), to_input_layout(scan.mask, scan) if scan.transposed else _mask_layout(scan))
    return out


def _mask_layout(scan: Scan) -> np.ndarray:
    """The mask as ``(H, W)`` for a 2-D input, else ``(S, H, W)`` (slice first whatever the input's layout)."""
    return scan.mask[0] if scan.squeeze else scan.mask


def main(argv: list[str] | None = None) -> int:
    """``csmri reconstruct``; user mistakes raise :class:`InferenceError` (and the other
    :class:`csmri.errors.CsmriError`), which the ``csmri`` command prints as one line plus a hint (status 2)."""
    args = build_parser().parse_args(argv)
    out = reconstruct(args)
    print(f"wrote {out} and {mask_path(out)}")
    return 0


if __name__ == "__main__":
    from csmri.app.cli import main as csmri_main

    sys.exit(csmri_main(["reconstruct", *sys.argv[1:]]))
