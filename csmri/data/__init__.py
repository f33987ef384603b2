"""Data: the dataset layout, the slice dataset, its sources (phantom, folders of scans) and the DataModule.

Modules: :mod:`.layout` (the on-disk contract), :mod:`.dataset`, :mod:`.datamodule`, :mod:`.transforms`,
:mod:`.scan_files` (raw scan readers), :mod:`.sources` (``phantom/``, ``folder/``), :mod:`.prepare`
(:func:`~csmri.data.prepare.prepare_dataset`, what ``csmri data prepare`` runs). Masks are drawn by
:class:`csmri.physics.MaskSampler`.

Names are imported lazily so that light users (the phantom, ``csmri.config``) do not pay for Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MRIDataModule": "csmri.data.datamodule",
    "SliceDataset": "csmri.data.dataset",
    "read_meta": "csmri.data.layout",
    "MaskSampler": "csmri.physics.sampling",  # moved to csmri.physics; kept for `from csmri.data import MaskSampler`
}
# Modules that moved into csmri.data.sources: run configs saved earlier name e.g. the _target_
# ``csmri.data.folder.FolderSource``, which Hydra resolves attribute by attribute through these.
_MOVED_MODULES = {
    "folder": "csmri.data.sources.folder",
    "phantom": "csmri.data.sources.phantom",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MOVED_MODULES:
        return importlib.import_module(_MOVED_MODULES[name])
    raise AttributeError(f"module 'csmri.data' has no attribute {name!r}")
