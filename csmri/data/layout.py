"""The on-disk dataset contract (:data:`FORMAT`): the one module that knows how a prepared dataset looks.

Layout::

    <root>/meta.json                 {"format": FORMAT, "source", "size": [H, W],
                                      "splits": {"train": [ids], "val": [ids], "test": [ids]}, "label_names",
                                      ... fields of the source that wrote it}
    <root>/<split>/<patient_id>.h5   "image" complex64 (S, H, W) and "label" uint8 (S, H, W), one slice per
                                     chunk; "keys" (S,) utf-8 slice keys "<patient_id>/<slice:03d>";
                                     attrs["patient_id"] (+ attributes of the source)

Conventions: each slice has maximum magnitude 1 (:func:`normalise_max_magnitude`; writers store it so and
:class:`csmri.data.SliceDataset` normalises again on read); patients, never slices, are split into train/val/test
(:func:`split_indices`: the paper's 24/6/7 of 37 patients, seeded). ``meta.json`` is written last, so an
interrupted writer leaves no readable dataset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from csmri.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    import h5py

__all__ = [
    "FORMAT",
    "META_FILE",
    "PAPER_SPLIT",
    "SPLITS",
    "build_meta",
    "has_layout",
    "normalise_max_magnitude",
    "open_case_file",
    "read_meta",
    "read_slice_keys",
    "scale_slices",
    "slice_key",
    "slice_peaks",
    "split_counts",
    "split_indices",
    "write_case_file",
    "write_meta",
]

FORMAT = "csmri-slices-v1"
SPLITS = ("train", "val", "test")
META_FILE = "meta.json"
PAPER_SPLIT = (24, 6, 7)  # train/val/test patients of the paper's 37
CASE_DATASETS = ("image", "label", "keys")


# -- meta.json --------------------------------------------------------------------------------------


def has_layout(path: str | Path) -> bool:
    """True when ``path`` holds a prepared dataset (its ``meta.json``)."""
    return (Path(path) / META_FILE).is_file()


def build_meta(source: str, size: Sequence[int], **fields: Any) -> dict[str, Any]:
    """The ``meta.json`` content: ``format``, ``source`` and ``size`` ``[H, W]`` first, then ``fields`` in order.

    ``fields`` must hold ``splits`` (patient ids for every split of :data:`SPLITS`) and usually ``label_names``.
    """
    splits = fields.get("splits")
    if not isinstance(splits, Mapping) or set(splits) != set(SPLITS):
        raise ValueError(f"meta.json needs splits with exactly the keys {list(SPLITS)}, got {splits!r}")
    return {"format": FORMAT, "source": source, "size": [int(size[0]), int(size[1])], **fields}


def write_meta(root: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` (from :func:`build_meta`) as ``<root>/meta.json``; returns its path."""
    path = Path(root) / META_FILE
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(root: str | Path) -> dict[str, Any]:
    """Read and validate ``<root>/meta.json``; raises ``FileNotFoundError``/``ValueError`` with the path."""
    path = Path(root) / META_FILE
    if not path.is_file():
        where = "does not exist" if not Path(root).exists() else f"has no {path.name}"
        raise DatasetNotFoundError(
            f"no dataset at {Path(root)} (the folder {where})",
            f"for a folder of your own scans use data=folder data.root={root}; write the phantom with "
            f"`csmri data phantom --out {root}`; or convert scans with `csmri data prepare data=<name> "
            f"data.root=RAW --out {root}`",
        )
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})", "prepare the dataset again (it is damaged)") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{path}: unsupported dataset format {found!r}, expected {FORMAT!r}")
    missing = [s for s in SPLITS if s not in (meta.get("splits") or {})]
    if missing:
        raise DataError(f"{path}: splits {missing} are missing", "prepare the dataset again (it is damaged)")
    return meta


# -- per-case HDF5 files ----------------------------------------------------------------------------


def slice_key(patient_id: str, index: int) -> str:
    """The stable key of slice ``index`` of ``patient_id``: ``"phantom_007/012"``."""
    return f"{patient_id}/{index:03d}"


def write_case_file(
    path: str | Path,
    patient_id: str,
    image: np.ndarray,
    label: np.ndarray,
    indices: Sequence[int] | None = None,
    attrs: Mapping[str, str] | None = None,
) -> None:
    """Write one case: ``image`` complex64 and ``label`` uint8 ``(S, H, W)`` chunked per slice, and the keys.

    ``indices`` are the slice numbers in the keys (default ``0..S-1``); ``attrs`` are extra file attributes.
    """
    import h5py

    n_slices, height, width = image.shape
    keys = [slice_key(patient_id, int(i)) for i in (range(n_slices) if indices is None else indices)]
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=image.astype(np.complex64), chunks=(1, height, width))
        f.create_dataset("label", data=label.astype(np.uint8), chunks=(1, height, width))
        f.create_dataset("keys", data=keys, dtype=h5py.string_dtype("utf-8"))
        f.attrs["patient_id"] = patient_id
        for name, value in (attrs or {}).items():
            f.attrs[name] = value


def open_case_file(path: str | Path) -> h5py.File:
    """Open a case file for reading and check its datasets and shapes (raises naming ``path``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"dataset file listed in meta.json is missing: {path}", "prepare the dataset again (it is incomplete)"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(
            f"cannot read dataset file {path}: {str(err).splitlines()[0]}",
            "the file is truncated or damaged: prepare the dataset again",
        ) from err
    for name in CASE_DATASETS:
        if name not in f:
            f.close()
            raise DataError(f"{path}: missing dataset {name!r}", "prepare the dataset again")
    if f["image"].shape != f["label"].shape or f["image"].shape[0] != f["keys"].shape[0]:
        shapes = (f["image"].shape, f["label"].shape, f["keys"].shape)
        f.close()
        raise DataError(f"{path}: inconsistent image/label/keys shapes {shapes}", "prepare the dataset again")
    if f["image"].ndim != 3 or not np.issubdtype(f["image"].dtype, np.complexfloating):
        found = (f["image"].dtype, f["image"].shape)
        f.close()
        raise DataError(f"{path}: `image` must be complex (S, H, W), found {found}", "prepare the dataset again")
    return f


def read_slice_keys(f: h5py.File) -> list[str]:
    """The slice keys of an open case file, as ``str``."""
    return [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][()]]


# -- per-slice normalisation ------------------------------------------------------------------------


def slice_peaks(image: np.ndarray) -> np.ndarray:
    """Maximum magnitude of each slice (the last two axes); shape ``image.shape[:-2]``, 0 for empty slices."""
    flat = np.abs(image).reshape(*image.shape[:-2], -1)
    return flat.max(axis=-1) if flat.shape[-1] else np.zeros(flat.shape[:-1])


def scale_slices(image: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Divide each slice (last two axes) by its ``scale``; slices with scale 0 — or subnormal, below float32's
    smallest normal number, whose reciprocal overflows — are left unchanged."""
    real = np.result_type(np.abs(image[..., :0, :0]).dtype, np.float32)
    return image / np.where(scale >= np.finfo(np.float32).tiny, scale, 1.0)[..., None, None].astype(real)


def normalise_max_magnitude(image: np.ndarray) -> np.ndarray:
    """Scale each slice (last two axes) to maximum magnitude 1; all-zero slices are returned unchanged."""
    return scale_slices(image, slice_peaks(image))


# -- patient split ----------------------------------------------------------------------------------


def split_counts(n_patients: int, ratios: Sequence[float] | None = None) -> tuple[int, int, int]:
    """Train/val/test patient counts in ``ratios`` (default the paper's 24/6/7: 37 -> (24, 6, 7)).

    Train and val are rounded half up; every split gets at least one patient (val, then train give way), test
    the rest; so ``n_patients >= 3`` (``ValueError`` otherwise). E.g. 4 -> (2, 1, 1).
    """
    if n_patients < 3:
        raise ValueError(f"need at least 3 patients for a train/val/test split, got {n_patients}")
    ratios = PAPER_SPLIT if ratios is None else ratios
    total = sum(ratios)
    n_val = max(1, math.floor(n_patients * ratios[1] / total + 0.5))
    n_val = min(n_val, n_patients - 2)
    n_train = max(1, min(math.floor(n_patients * ratios[0] / total + 0.5), n_patients - n_val - 1))
    return n_train, n_val, n_patients - n_train - n_val


def split_indices(n_patients: int, seed: int, ratios: Sequence[float] | None = None) -> dict[str, list[int]]:
    """Patient indices per split: ``default_rng(seed).permutation(n_patients)`` cut by :func:`split_counts`.

    Indices are sorted within each split.
    """
    counts = split_counts(n_patients, ratios)
    order = np.random.default_rng(seed).permutation(n_patients)
    bounds = np.cumsum((0, *counts))
    return {s: sorted(int(i) for i in order[bounds[k] : bounds[k + 1]]) for k, s in enumerate(SPLITS)}
