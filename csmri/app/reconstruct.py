"""`csmri reconstruct`: reconstruct scans with a trained checkpoint (details: docs/reconstruct.md).

``--ckpt`` is a ``.ckpt`` file or a run folder (its ``checkpoints/best.ckpt``, else ``last.ckpt``). ``--input`` is one
scan (a file, or a folder holding one DICOM series or PNG/TIFF stack) written to the file ``--out``; or a **folder of
scans** written into the folder ``--out`` (see :func:`folder_entries`), one summary line per scan, a bad scan
reported and skipped; exit status 0 when all were reconstructed, 1 when some failed (the others are written), 2 for
a mistake that stops everything (a bad checkpoint or option).

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
``(slices, H, W)``. An odd number of phase-encode lines (H) cannot be masked: crop or pad such images, or pass
``--pad`` (each slice is zero-padded, centred, to the smallest size the mask and network take; the output is cropped
back; the mask written is the padded grid's). Intensities: each slice is scaled to maximum magnitude 1 (the training
normalisation, :func:`csmri.data.layout.normalise_max_magnitude`) and the output scaled back. The mask used is
written as ``<out stem>_mask.npy`` (``(H, W)`` for a slice, ``(S, H, W)`` for a volume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from csmri.app.reconstruct_io import (
    OUTPUT_FORMATS,
    Scan,
    mask_path,
    output_extension,
    read_input,
    save_mask,
    to_input_layout,
    write_output,
)
from csmri.data.scan_files import EXTENSIONS, is_scan_entry, split_extension
from csmri.errors import CsmriError, InferenceError

DICOM_SERIES = ("", ".dcm")  # the extensions of the files of a DICOM series folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csmri reconstruct",
        description=(
            "Reconstruct a fully-sampled image (undersampled retrospectively) or measured single-coil k-space with "
            "a trained csmri checkpoint (stage 1, stage 2, DAGAN or joint), or every scan in a folder. Intensities: "
            "every input slice is scaled to maximum magnitude 1, as in training, and the output is scaled back."
        ),
        epilog=(
            "Inputs: NIfTI, NRRD, DICOM, PNG/TIFF, HDF5, NPZ, NPY images (slices along the last axis, HDF5/NPZ/NPY "
            "along the first); HDF5/NPZ with centred 'kspace' (S,H,W) and 'mask' (H,W)/(S,H,W), or fastMRI "
            "single-coil files. Outputs by extension: .nii.gz/.nii (keeps a NIfTI input's affine and header), .h5, "
            ".npz, .png (magnitude preview, a grid for a volume). The mask used is written to <out stem>_mask.npy. "
            "A folder of scans (--input DIR --out DIR): each file, and each sub-folder (a DICOM series), is one "
            "scan; exit status 1 when some failed."
        ),
    )
    parser.add_argument("--ckpt", required=True, help="a csmri checkpoint (.ckpt) or a `csmri train` run folder")
    parser.add_argument("--input", required=True, help="a scan (file or series folder), or a folder of scans")
    parser.add_argument(
        "--out", required=True, help=f"output file ({', '.join(OUTPUT_FORMATS)}), or a folder for a folder of scans"
    )
    parser.add_argument(
        "--format",
        default=None,
        choices=[e[1:] for e in OUTPUT_FORMATS],
        help="output format of a folder of scans (default: the input's where it is an output format, else h5)",
    )
    parser.add_argument(
        "--acceleration",
        type=float,
        default=None,
        help="undersampling factor for image inputs (default: the checkpoint's, else 8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="mask seed for image inputs (default 0)")
    parser.add_argument("--mask", default=None, help="a .npy mask (H,W) or (S,H,W) instead of drawing one")
    parser.add_argument("--pad", action="store_true", help="zero-pad image slices to a size that fits; crop back")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="32", choices=["32", "bf16"], help="network precision (default 32)")
    parser.add_argument("--complex", action="store_true", help="write the complex image (.nii/.h5/.npz)")
    return parser


# -- one scan ---------------------------------------------------------------------------------------------------


def reconstruct_scan(model: Any, path: Path, out: Path, args: argparse.Namespace, progress: bool = True) -> Scan:
    """Reconstruct the scan at ``path`` with ``model`` (a :class:`csmri.inference.TrainedReconstructor`) into ``out``
    and ``<out stem>_mask.npy``; returns the scan read."""
    import torch

    ext = output_extension(out)
    scan = read_input(path, args, model)
    try:
        model.check_size(scan.kspace.shape[-2:], str(path))
    except InferenceError as err:
        if scan.measured or args.pad:
            raise
        raise InferenceError(err.message, f"{err.hint}, or pass --pad") from err
    kspace, mask = torch.from_numpy(scan.kspace), torch.from_numpy(scan.mask)
    # image inputs are already at peak 1; measured k-space is normalised by its zero-filled peak in reconstruct()
    recon = model.reconstruct(kspace, mask, normalise=scan.measured, progress=progress).numpy()
    if scan.crop is not None:
        recon = recon[(..., *scan.crop)]
    recon = recon * scan.scale[:, None, None].astype(np.float32)
    write_output(out, ext, recon.astype(np.complex64), scan, path, args.complex)
    save_mask(mask_path(out), to_input_layout(scan.mask, scan) if scan.transposed else _mask_layout(scan))
    return scan


def _mask_layout(scan: Scan) -> np.ndarray:
    """The mask as ``(H, W)`` for a 2-D input, else ``(S, H, W)`` (slice first whatever the input's layout)."""
    return scan.mask[0] if scan.squeeze else scan.mask


# -- a folder of scans ------------------------------------------------------------------------------------------


def is_folder_of_scans(path: Path) -> bool:
    """True for a folder that holds several scans rather than one series: it has a sub-folder, or a file that is not
    part of a DICOM series or a PNG/TIFF stack (HDF5, NIfTI, NumPy, ...)."""
    if not path.is_dir():
        return False
    files = [p for p in path.iterdir() if not p.name.startswith(".")]
    series = DICOM_SERIES + (".png", ".tif", ".tiff")
    return any(p.is_dir() or split_extension(p.name)[1] not in series for p in files)


def folder_entries(folder: Path, out: Path) -> tuple[list[Path], list[Path]]:
    """The scans of ``folder`` (files with a known extension, and sub-folders: one DICOM series or PNG/TIFF stack
    each), sorted by name, and the other entries (skipped). ``out`` is left out when it lies inside ``folder``."""
    scans, others = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.resolve() == out.resolve():
            continue
        (scans if is_scan_entry(entry) else others).append(entry)
    return scans, others


def output_name(entry: Path, fmt: str | None, taken: set[str]) -> str:
    """``<stem>.<fmt>`` for the scan ``entry``: ``fmt`` or the input's own format where it is an output format, else
    ``.h5``; ``<stem>_<input ext>`` when another scan already took the name."""
    stem, ext = split_extension(entry.name) if entry.is_file() else (entry.name, "")
    out_ext = f".{fmt}" if fmt else ext if ext in OUTPUT_FORMATS else ".h5"
    name = f"{stem}{out_ext}"
    if name in taken:
        name = f"{stem}_{ext.lstrip('.').replace('.', '_') or 'series'}{out_ext}"
    taken.add(name)
    return name


def reconstruct_folder(model: Any, args: argparse.Namespace) -> int:
    """``--input DIR --out DIR``: every scan, one summary line each; the number of scans that failed."""
    from tqdm.auto import tqdm

    folder, out = Path(args.input), Path(args.out)
    if split_extension(out.name)[1] in EXTENSIONS or out.is_file():
        raise InferenceError(f"--out {out} names a file but --input {folder} is a folder of scans", "name a folder")
    if out.resolve() == folder.resolve():
        raise InferenceError(f"--out {out} is the input folder", "write the reconstructions to another folder")
    scans, others = folder_entries(folder, out)
    if not scans:
        raise InferenceError(f"{folder}: no scans ({', '.join(EXTENSIONS)} files or series folders)", "check --input")
    taken: set[str] = set()
    failed = 0
    bar = tqdm(scans, desc="reconstruct", unit="scan", disable=None)
    for entry in bar:
        target = out / output_name(entry, args.format, taken)
        start = time.perf_counter()
        try:
            scan = reconstruct_scan(model, entry, target, args, progress=False)
        except (CsmriError, ValueError, OSError) as err:  # a bad scan: report it and go on
            failed += 1
            message = str(getattr(err, "message", None) or err).removeprefix(f"{entry}: ")
            hint = f" ({err.hint})" if getattr(err, "hint", "") else ""
            bar.write(f"failed  {entry.name}: {message}{hint}")
            continue
        n, h, w = scan.kspace.shape
        padded = f", padded to {h}x{w}" if scan.crop else ""
        kind = "k-space" if scan.measured else "image"
        bar.write(
            f"ok      {entry.name} -> {target} ({kind}, {n} slice{'s' * (n != 1)}{padded}, "
            f"{time.perf_counter() - start:.1f} s)"
        )
    for entry in others:
        bar.write(f"skipped {entry.name}: not a scan file ({', '.join(EXTENSIONS)}) or series folder")
    bar.close()
    done = len(scans) - failed
    print(f"reconstructed {done} of {len(scans)} scans into {out}" + (f"; {failed} failed" if failed else ""))
    return failed


# -- command ----------------------------------------------------------------------------------------------------


def reconstruct(args: argparse.Namespace) -> Path:
    """Reconstruct the one scan ``args.input`` into ``args.out``; returns the output path."""
    out = Path(args.out)
    output_extension(out)
    reconstruct_scan(_load(args), Path(args.input), out, args)
    return out


def _load(args: argparse.Namespace) -> Any:
    from csmri.inference import load

    if args.batch_size < 1:
        raise InferenceError(f"--batch-size must be >= 1, got {args.batch_size}", "pass a positive number")
    return load(args.ckpt, device=args.device, precision=args.precision, batch_size=args.batch_size)


def main(argv: list[str] | None = None) -> int:
    """``csmri reconstruct``; user mistakes raise :class:`InferenceError` (and the other
    :class:`csmri.errors.CsmriError`), which the ``csmri`` command prints as one line plus a hint (status 2). A folder
    of scans returns 1 when some of them failed."""
    args = build_parser().parse_args(argv)
    if is_folder_of_scans(Path(args.input)):
        failed = reconstruct_folder(_load(args), args)
        if failed:
            print(f"csmri reconstruct: {failed} scan{'s' * (failed != 1)} failed (listed above)", file=sys.stderr)
        return 1 if failed else 0
    out = reconstruct(args)
    print(f"wrote {out} and {mask_path(out)}")
    return 0


if __name__ == "__main__":
    from csmri.app.cli import main as csmri_main

    sys.exit(csmri_main(["reconstruct", *sys.argv[1:]]))
