"""Writing result tables and JSON reports: one markdown-table writer, one strict-JSON writer, one way to say how long.

Used by the evaluation tables (:mod:`csmri.eval.tables`), the reader-study scores
(:mod:`csmri.eval.reader_study.score`) and the sweep summary (:mod:`csmri.app.sweep`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = ["markdown_table", "finite_or_none", "write_strict_json"]

Align = Literal["left", "right", "none"]
_RULE = {"left": ":---", "right": "---:", "none": "---"}


def duration(seconds: float) -> str:
    """A time span as people read it: ``"45 s"`` below 90 s, ``"13 min"`` below 90 min, else ``"2.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[Align] | None = None) -> str:
    """A GitHub-flavoured markdown table: ``| a | b |`` lines, no trailing newline.

    Cells are written as given (no escaping). ``align`` has one entry per column (``"left"``,
    ``"right"`` or ``"none"``); default ``"none"`` for every column (a ``---`` rule).
    """
    align = list(align) if align is not None else ["none"] * len(header)
    if len(align) != len(header):
        raise ValueError(f"markdown_table: {len(align)} alignments for {len(header)} columns")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(_RULE[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (nan, ±inf) replaced by ``None``, through dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def write_strict_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented strict JSON (non-finite floats as ``null``), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_or_none(payload), indent=2, allow_nan=False) + "\n")
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out a matplotlib figure, write it to ``path`` (creating its folder) and close it; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
