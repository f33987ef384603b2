"""Dataset sources: how a ``csmri-slices-v1`` layout is made when the configured root has none.

A source turns something (nothing, for the phantom; a folder of NIfTI files; ...) into the on-disk
layout read by :class:`csmri.data.SliceDataset`, once, so training never re-parses raw files.
The DataModule calls :meth:`DatasetSource.prepare` on rank 0 in ``prepare_data`` and
:meth:`DatasetSource.layout_dir` on every rank in ``setup``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


def has_layout(path: Path) -> bool:
    """True when ``path`` holds a prepared dataset (its ``meta.json``)."""
    return (Path(path) / "meta.json").is_file()


@runtime_checkable
class DatasetSource(Protocol):
    def layout_dir(self, root: Path) -> Path:
        """Where the prepared layout for data root ``root`` lives (whether or not it exists yet)."""
        ...

    def prepare(self, root: Path) -> Path:
        """Write the layout if it is missing and return :meth:`layout_dir`."""
        ...


class PhantomSource:
    """Generates the synthetic LGE-cardiac phantom (:mod:`csmri.data.phantom`) into ``root``."""

    def __init__(
        self, patients: int = 37, size: int = 128, slices: int = 20, seed: int = 0, noise_std: float = 0.0
    ) -> None:
        self.patients, self.size, self.slices, self.seed, self.noise_std = patients, size, slices, seed, noise_std

    def layout_dir(self, root: Path) -> Path:
        return Path(root)

    def prepare(self, root: Path) -> Path:
        root = Path(root)
        if has_layout(root):
            return root
        from csmri.data.phantom import write_phantom_dataset

        log.info("no dataset at %s: generating the phantom (%d patients, %d^2)", root, self.patients, self.size)
        return write_phantom_dataset(
            root,
            n_patients=self.patients,
            size=self.size,
            n_slices=self.slices,
            seed=self.seed,
            noise_std=self.noise_std,
        )
