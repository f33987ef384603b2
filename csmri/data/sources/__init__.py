"""Dataset sources: how a prepared dataset (:mod:`csmri.data.layout`) is made when the configured root has none.

A source turns something (nothing, for the phantom: :mod:`csmri.data.sources.phantom`; a folder of scans:
:mod:`csmri.data.sources.folder`) into the on-disk layout read by :class:`csmri.data.SliceDataset`, once, so
training never re-parses raw files. The DataModule calls :meth:`DatasetSource.prepare` on rank 0 in
``prepare_data`` and :meth:`DatasetSource.layout_dir` on every rank in ``setup``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from csmri.data.layout import has_layout

__all__ = ["DatasetSource", "has_layout"]


@runtime_checkable
class DatasetSource(Protocol):
    def layout_dir(self, root: Path) -> Path:
        """Where the prepared layout for data root ``root`` lives (whether or not it exists yet)."""
        ...

    def prepare(self, root: Path) -> Path:
        """Write the layout if it is missing and return :meth:`layout_dir`."""
        ...


# Run configs saved before the sources became sub-packages name ``csmri.data.sources.PhantomSource``.
_MOVED = {"PhantomSource": "csmri.data.sources.phantom"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'csmri.data.sources' has no attribute {name!r}")
