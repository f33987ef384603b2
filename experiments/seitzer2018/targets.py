"""The paper's regime and claims, checked on a Table-1 summary (the rows of ``table.json``).

Calibration targets (is the embedded study in the paper's regime?): RecNet at least 5 dB above zero-filling, the
segmentation net's Dice on fully-sampled images at least 0.75, RecNet's SIS between 0.6 and 0.9 (paper: 0.80).
Claims (Seitzer et al. 2018, Table 1): the refinement raises SIS over RecNet (paired Wilcoxon on per-slice Dice,
p < 0.01), costs at most 1 dB of PSNR, and joint training (DAGAN) stays below RecNet in PSNR.

Each check reads the rows by method name (``zero_filled``, ``recnet``, ``refinement``, ``dagan``, the ground truth);
a check whose methods are missing from the table is ``n/a``, never ``met``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from csmri.eval.recons import GROUND_TRUTH

MIN_RECNET_GAIN_DB = 5.0
MIN_GT_DICE = 0.75
RECNET_SIS_RANGE = (0.6, 0.9)
MAX_REFINEMENT_PSNR_LOSS_DB = 1.0
SIGNIFICANCE = 0.01


@dataclass(frozen=True)
class Check:
    kind: str  # "calibration" | "claim"
    target: str
    measured: str
    status: str  # "met" | "not met" | "n/a"


def _value(rows: Mapping[str, Mapping[str, Any]], method: str, field: str) -> float | None:
    value = rows.get(method, {}).get(field)
    return None if value is None or math.isnan(float(value)) else float(value)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _check(kind: str, target: str, value: Any, shown: Callable[[Any], str], ok: Callable[[Any], bool]) -> Check:
    """``n/a`` when ``value`` is None (a method missing from the table), else ``shown(value)``, met if ``ok(value)``."""
    if value is None:
        return Check(kind, target, "n/a", "n/a")
    return Check(kind, target, shown(value), "met" if ok(value) else "not met")


def _db(value: float) -> str:
    return f"{value:+.2f} dB"


def check_targets(table_rows: Sequence[Mapping[str, Any]]) -> list[Check]:
    """The calibration targets and the paper's claims, each ``met`` / ``not met`` / ``n/a`` on these rows."""
    rows = {r["method"]: r for r in table_rows}
    psnr = {m: _value(rows, m, "psnr_mean") for m in ("zero_filled", "recnet", "refinement", "dagan")}
    recnet_sis, refinement_sis = _value(rows, "recnet", "sis"), _value(rows, "refinement", "sis")
    # RecNet's p (Dice) is against the table's reference: only meaningful when that reference is the refinement
    p_dice = rows.get("recnet", {}).get("p_dice") if rows.get("refinement", {}).get("is_reference") else None
    sis_test = None if None in (refinement_sis, recnet_sis, p_dice) else (refinement_sis, recnet_sis, p_dice)
    lo, hi = RECNET_SIS_RANGE
    return [
        _check(
            "calibration",
            f"RecNet PSNR ≥ zero-filled + {MIN_RECNET_GAIN_DB:g} dB",
            _difference(psnr["recnet"], psnr["zero_filled"]),
            _db,
            lambda gain: gain >= MIN_RECNET_GAIN_DB,
        ),
        _check(
            "calibration",
            f"segmentation Dice on fully-sampled images ≥ {MIN_GT_DICE:g}",
            _value(rows, GROUND_TRUTH, "dice_mean"),
            "{:.3f}".format,
            lambda dice: dice >= MIN_GT_DICE,
        ),
        _check(
            "calibration",
            f"RecNet SIS in [{lo:g}, {hi:g}] (paper 0.80)",
            recnet_sis,
            "{:.3f}".format,
            lambda sis: lo <= sis <= hi,
        ),
        _check(
            "claim",
            f"refinement SIS > RecNet SIS, paired Wilcoxon on per-slice Dice p < {SIGNIFICANCE:g}",
            sis_test,
            lambda t: f"{t[0]:.3f} vs {t[1]:.3f}, p {_p(t[2])}",
            lambda t: t[0] > t[1] and t[2] < SIGNIFICANCE,
        ),
        _check(
            "claim",
            f"refinement PSNR ≥ RecNet − {MAX_REFINEMENT_PSNR_LOSS_DB:g} dB",
            _difference(psnr["refinement"], psnr["recnet"]),
            _db,
            lambda loss: loss >= -MAX_REFINEMENT_PSNR_LOSS_DB,
        ),
        _check(
            "claim",
            "DAGAN PSNR < RecNet PSNR",
            _difference(psnr["dagan"], psnr["recnet"]),
            _db,
            lambda gap: gap < 0,
        ),
    ]


def _p(p: float) -> str:
    """``< 0.001`` / ``= 0.004``: after ``p`` in prose (the tables' ``format_p`` writes cells)."""
    return "< 0.001" if p < 1e-3 else f"= {p:.3f}"


def targets_markdown(checks: Sequence[Check]) -> str:
    """A markdown table: kind | target | measured | status."""
    lines = ["| | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {c.kind} | {c.target} | {c.measured} | **{c.status}** |" for c in checks]
    return "\n".join(lines)
