"""Shared fixtures: a tiny phantom dataset generated once per test session (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

TINY = {"n_patients": 4, "size": 64, "n_slices": 6, "seed": 0}


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-patient (2/1/1 split), 6-slice, 64x64 phantom dataset."""
    from csmri.data.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", progress=False, **TINY)
