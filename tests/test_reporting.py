"""The shared report writers: markdown tables and strict JSON."""

from __future__ import annotations

import json
import math

import pytest

from csmri.reporting import finite_or_none, markdown_table, write_strict_json


def test_markdown_table_alignment() -> None:
    rows = [["a", "1"], ["b", "**2**"]]
    assert markdown_table(["x", "y"], rows) == "| x | y |\n|---|---|\n| a | 1 |\n| b | **2** |"
    assert markdown_table(["x", "y"], rows, ["left", "right"]).splitlines()[1] == "|:---|---:|"
    assert markdown_table(["x"], []) == "| x |\n|---|"
    with pytest.raises(ValueError, match="alignments"):
        markdown_table(["x", "y"], rows, ["left"])


def test_strict_json_nulls_non_finite(tmp_path) -> None:
    payload = {"a": math.nan, "rows": [{"p": math.inf, "q": 1.5, "s": "x"}], "n": None}
    assert finite_or_none(payload) == {"a": None, "rows": [{"p": None, "q": 1.5, "s": "x"}], "n": None}
    path = write_strict_json(tmp_path / "sub" / "r.json", payload)
    assert json.loads(path.read_text()) == finite_or_none(payload)
    assert path.read_text().endswith("}\n")
