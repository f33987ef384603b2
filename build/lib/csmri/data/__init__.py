"""Data: the phantom generator, the slice dataset, acquisition simulation and the DataModule.

Names are imported lazily so that light users (``csmri.data.phantom``) do not pay for Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MRIDataModule": "csmri.data.datamodule",
    "MaskSampler": "csmri.data.sampling",
    "SliceDataset": "csmri.data.dataset",
    "read_meta": "csmri.data.dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'csmri.data' has no attribute {name!r}")
