"""The evaluation table on a console that is not a terminal, and why SIS is n/a when it is."""

from __future__ import annotations

import math

from csmri.eval.console import print_summary, sis_status
from csmri.eval.tables import summarise_methods
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


def test_the_table_and_per_slice_metrics_reach_wandb_as_tables(tmp_path, monkeypatch):
    """An offline W&B run (no network) of ``csmri eval``'s logging: both tables are in the run's files."""
    import json

    from omegaconf import OmegaConf

    from csmri.eval.runner import log_to_wandb
    from csmri.eval.tables import write_per_slice_csv

    monkeypatch.setenv("WANDB_MODE", "offline")
    records, dice_gt = _records()
    write_per_slice_csv(records, tmp_path / "per_slice.csv")
    rows = summarise_methods(records, dice_gt, reference="refinement")
    cfg = OmegaConf.create({"wandb": {"enabled": True, "mode": "offline", "project": "csmri", "group": "g"}})
    log_to_wandb(cfg, tmp_path, rows)
    (per_slice,) = tmp_path.glob("wandb/offline-run-*/files/media/table/eval/per_slice_*.table.json")
    table = json.loads(per_slice.read_text())
    assert "psnr" in table["columns"] and len(table["data"]) == len(records)
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/table/eval/table_*.table.json"))


def test_p_value_na_says_why():
    from csmri.eval.console import p_value_notes

    records, dice_gt = _records()
    assert p_value_notes(summarise_methods(records, dice_gt, reference="refinement")) == []
    one_slice = [r for r in records if r["key"] == records[0]["key"]]
    notes = p_value_notes(summarise_methods(one_slice, dice_gt, reference="refinement"))
    assert notes and notes[0].startswith("p (PSNR) n/a for zero_filled, recnet: fewer than 2 slices")
