"""The evaluation table on a console that is not a terminal, and why SIS is n/a when it is."""

from __future__ import annotations

import math

from csmri.eval.tables import print_summary, sis_status, summarise_methods
from tests.eval.test_tables import _records

LONG = "Zero-filled baseline with a long display name"


def _rows(dice_gt_value: float | None = None) -> list[dict]:
    records, dice_gt = _records()
    if dice_gt_value is not None:
        dice_gt = dict.fromkeys(dice_gt, dice_gt_value)
    labels = {"zero_filled": LONG}
    return summarise_methods(records, dice_gt, reference="refinement", labels=labels)


def test_table_is_full_width_when_output_is_not_a_terminal(capsys):
    print_summary(_rows(), notes=["SIS and Dice n/a: a reason"])
    out = capsys.readouterr().out
    assert LONG in out and "…" not in out  # nothing cut at 80 columns
    assert out.rstrip().splitlines()[-1] == "SIS and Dice n/a: a reason"


def test_sis_na_says_why():
    rows = _rows(dice_gt_value=0.0)
    assert all(math.isnan(r["sis"]) for r in rows if r["kind"] == "method")
    status = sis_status(rows, "computed")
    assert status.startswith("n/a: the Dice of the segmentation net on the ground-truth images is 0")
    assert sis_status(_rows(), "computed") == "computed"  # a normal table: unchanged
    assert sis_status(rows, "skipped: no segnet.ckpt") == "skipped: no segnet.ckpt"
    records, _ = _records()
    no_structure = summarise_methods([{**r, "dice": None} for r in records], {}, reference="refinement")
    assert sis_status(no_structure, "computed with an ensemble") == "n/a: no slice of the split contains the structure"
