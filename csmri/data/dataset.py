"""Slice dataset over a prepared dataset (the layout of :mod:`csmri.data.layout`).

Each item is one fully-sampled slice: ``{"target": complex64 (H, W) with max magnitude 1,
"label": int64 (H, W), "key": "<patient_id>/<slice>"}``. HDF5 files are opened lazily, once per
worker process, and read one chunked slice per item (or everything is cached in RAM with ``cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from csmri.data.layout import SPLITS, normalise_max_magnitude, open_case_file, read_meta, read_slice_keys

__all__ = ["SliceDataset", "read_meta"]  # read_meta: re-exported for csmri.eval


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
            with open_case_file(path) as f:
                keys = read_slice_keys(f)
            self.index += [(file_idx, s) for s in range(len(keys))]
            self.keys += keys
        self._cache: list[tuple[np.ndarray, np.ndarray]] | None = None
        if cache:
            self._cache = [self._read(i) for i in range(len(self))]
            self._close()

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
        if "_handles" in self.__dict__:  # __init__ may have failed before opening anything
            self._close()
