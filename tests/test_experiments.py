"""The experiment scripts (not run in tests: they take minutes) at least import against today's package layout."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["bench", "precision_parity", "dlmri_study"])
def test_experiment_script_imports(name):
    module = importlib.import_module(f"experiments.{name}")
    assert callable(module.main)
