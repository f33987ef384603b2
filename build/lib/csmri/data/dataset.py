"""Slice dataset over the csmri on-disk layout (``csmri-slices-v1``).

Layout (written by :func:`csmri.data.phantom.write_phantom_dataset` and by data preparation)::

    <root>/meta.json                 {"format": "csmri-slices-v1", "splits": {"train": [ids], ...}, ...}
    <root>/<split>/<patient_id>.h5   "image" complex64 (S, H, W), "label" uint8 (S, H, W),
                                     "keys" (S,) utf-8 strings "<patient_id>/<slice>"

Each item is one fully-sampled slice: ``{"target": complex64 (H, W) with max magnitude 1,
"label": int64 (H, W), "key": "<patient_id>/<slice>"}``. HDF5 files are opened lazily, once per
worker process, and read one chunked slice per item (or everything is cached in RAM with ``cache``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

FORMAT = "csmri-slices-v1"
SPLITS = ("train", "val", "test")


def read_meta(root: str | Path) -> dict[str, Any]:
    """Read and validate ``<root>/meta.json``; raises ``FileNotFoundError``/``ValueError`` with the path."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no dataset at {Path(root)} (missing {path.name}); write one with "
            f"`csmri data phantom --out {root}` or set data.generate_if_missing=true"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported dataset format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [s for s in SPLITS if s not in meta.get("splits", {})]
    if missing:
        raise ValueError(f"{path}: splits {missing} are missing")
    return meta


def normalise_max_magnitude(image: np.ndarray) -> np.ndarray:
    """Scale a complex slice so its maximum magnitude is 1 (an all-zero slice is returned unchanged)."""
    peak = float(np.abs(image).max())
    return image / peak if peak > 0 else image


class SliceDataset(Dataset):
    """All slices of one split, in patient order then slice order."""

    def __init__(self, root: str | Path, split: str, cache: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self._handles: dict[int, h5py.File] = {}
        self.root = Path(root)
        self.split = split
        self.meta = read_meta(self.root)
        self.files = [self.root / split / f"{pid}.h5" for pid in self.meta["splits"][split]]
        if not self.files:
            raise ValueError(f"{self.root}: split {split!r} has no patients")
        self.index: list[tuple[int, int]] = []
        self.keys: list[str] = []
        for file_idx, path in enumerate(self.files):
            with self._open_checked(path) as f:
                keys = [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][()]]
            self.index += [(file_idx, s) for s in range(len(keys))]
            self.keys += keys
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            self._cache = [self._read(i) for i in range(len(self))]
            self._close()

    @staticmethod
    def _open_checked(path: Path) -> h5py.File:
        if not path.is_file():
            raise FileNotFoundError(f"dataset file listed in meta.json is missing: {path}")
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise OSError(f"cannot read dataset file {path}: {err}") from err
        for name in ("image", "label", "keys"):
            if name not in f:
                f.close()
                raise ValueError(f"{path}: missing dataset {name!r}")
        if f["image"].shape != f["label"].shape or f["image"].shape[0] != f["keys"].shape[0]:
            shapes = (f["image"].shape, f["label"].shape, f["keys"].shape)
            f.close()
            raise ValueError(f"{path}: inconsistent image/label/keys shapes {shapes}")
        return f

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        file_idx, slice_idx = self.index[i]
        handle = self._handles.get(file_idx)
        if handle is None:
            handle = self._handles[file_idx] = h5py.File(self.files[file_idx], "r")
        image = np.asarray(handle["image"][slice_idx], dtype=np.complex64)
        label = np.asarray(handle["label"][slice_idx])
        return normalise_max_magnitude(image), label

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label = self._cache[i] if self._cache is not None else self._read(i)
        return {
            "target": torch.from_numpy(np.ascontiguousarray(image)),
            "label": torch.from_numpy(label.astype(np.int64)),
            "key": self.keys[i],
        }

    def _close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __getstate__(self) -> dict[str, Any]:
        # open HDF5 handles cannot cross process boundaries; each worker reopens its own
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self) -> None:
        self._close()
