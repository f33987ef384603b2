"""`csmri eval` end to end on the tiny phantom: identical masks, table, figure, recons, errors."""

from __future__ import annotations

import json

import pytest

from csmri.eval.runner import evaluate
from csmri.eval.tables import read_per_slice_csv
from tests.helpers import compose_config


def _eval_config(phantom_root, out, *extra):
    return compose_config("eval", [f"data.root={phantom_root}", "data.acceleration=4", "batch_size=4", *extra], out)


def test_eval_zero_filled_and_recnet(phantom_root, stage1_ckpt, tmp_path):
    cfg = _eval_config(
        phantom_root, tmp_path, "methods=[zero_filled,recnet]", f"recnet.ckpt={stage1_ckpt}", "reference=recnet"
    )
    rows = evaluate(cfg)
    names = [r["method"] for r in rows]
    assert names[1:] == ["zero_filled", "recnet"]
    for name in ("per_slice.csv", "table.md", "table.json", "figure.png", "recons.npz", "run_info.json"):
        assert (tmp_path / name).is_file(), name
    records = read_per_slice_csv(tmp_path / "per_slice.csv")
    assert len(records) == 2 * 6  # 1 test patient x 6 slices x 2 methods
    assert {r["key"] for r in records if r["method"] == "recnet"} == {
        r["key"] for r in records if r["method"] == "zero_filled"
    }
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["sis"].startswith("skipped")
    # the footnote says which weights were evaluated and how they were chosen (stage 1: best val/loss, epoch 0)
    footnote = (tmp_path / "table.md").read_text()
    assert "RecNet: best.ckpt, epoch 0 (best val/loss on the validation split)" in footnote
    assert info["checkpoints"]["recnet"].startswith("best.ckpt, epoch 0")


def test_methods_see_identical_inputs(phantom_root, stage1_ckpt, tmp_path):
    """Evaluating with another batch size gives the same zero-filled PSNR per slice: same masks."""
    a = _eval_config(phantom_root, tmp_path / "a", "methods=[zero_filled]", "batch_size=1")
    b = _eval_config(phantom_root, tmp_path / "b", "methods=[zero_filled]", "batch_size=5")
    evaluate(a), evaluate(b)
    ra = {r["key"]: r["psnr"] for r in read_per_slice_csv(tmp_path / "a" / "per_slice.csv")}
    rb = {r["key"]: r["psnr"] for r in read_per_slice_csv(tmp_path / "b" / "per_slice.csv")}
    assert ra == pytest.approx(rb, abs=1e-9)


def test_eval_errors(phantom_root, tmp_path):
    with pytest.raises(ValueError, match="recnet.ckpt"):
        evaluate(_eval_config(phantom_root, tmp_path, "methods=[recnet]"))
    with pytest.raises(ValueError, match="unknown method"):
        evaluate(_eval_config(phantom_root, tmp_path, "methods=[magic]"))


def test_eval_logs_table_to_wandb_offline(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    evaluate(_eval_config(phantom_root, tmp_path, "methods=[zero_filled]", "reference=zero_filled"))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # the run file with the logged table
