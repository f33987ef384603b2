"""What ``csmri eval`` prints: Table 1 on the console (rich; full width off a terminal) and the notes under it that
say why a value is n/a (SIS without a usable segmentation, a p-value without a reference)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from csmri.eval.tables import format_table


def sis_status(rows: Sequence[Mapping[str, Any]], note: str, segmenter: str = "the segmentation net") -> str:
    """``note`` (``computed ...`` or ``skipped: <why>``) unless the rows show SIS cannot be computed, then
    ``n/a: <why>``: no slice contains the structure, or the segmenter's mean Dice on ground truth is 0 (SIS divides
    by it)."""
    if not note.startswith("computed"):
        return note
    gt = next((r for r in rows if r.get("kind") == "ground_truth"), None)
    if gt is None:
        return note
    if not gt.get("n_structure"):
        return "n/a: no slice of the split contains the structure"
    dice_gt = gt.get("dice_mean")
    if dice_gt is not None and not math.isnan(float(dice_gt)) and float(dice_gt) == 0:
        return (
            f"n/a: the Dice of {segmenter} on the ground-truth images is 0 (it finds no structure there), and SIS "
            "divides by it; train the segmentation net longer or check segnet.ckpt"
        )
    return note


def p_value_notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why a p-value column shows ``n/a`` (``nan``: fewer than 2 slices paired with the reference), one line per
    column where it does; ``[]`` otherwise."""
    notes = []
    for field, what in (("p_psnr", "p (PSNR)"), ("p_dice", "p (Dice)")):
        methods = [str(r.get("label", r["method"])) for r in rows if _is_nan(r.get(field))]
        if methods:
            notes.append(
                f"{what} n/a for {', '.join(methods)}: fewer than 2 slices with a value for both it and the reference "
                "(the Wilcoxon signed-rank test needs at least 2 pairs)"
            )
    return notes


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def print_summary(
    rows: Sequence[Mapping[str, Any]], console: Any = None, title: str = "Evaluation", notes: Sequence[str] = ()
) -> None:
    """Print the table on the console with rich (best values in bold, plus slice counts) and ``notes`` below it
    (e.g. why SIS is n/a). Not on a terminal (a log file, a pipe), the table is as wide as its content: no column
    is cut to 80 characters."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=400)
    table_rows = format_table(rows)
    table = Table(title=title)
    for i, name in enumerate([*table_rows[0], "n"]):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row, cells in zip(rows, table_rows[1:], strict=True):
        styled = [f"[bold]{escape(c[2:-2])}[/bold]" if c.startswith("**") else escape(c) for c in cells]
        table.add_row(*styled, f"{row.get('n_structure', '')}/{row.get('n_slices', '')}")
    console.print(table)
    ref = next((r for r in rows if r.get("is_reference")), None)
    if ref is not None:
        console.print(f"p: two-sided paired Wilcoxon signed-rank test vs {ref.get('label', ref['method'])}")
    for note in notes:
        console.print(escape(note))
