"""Table 1: per-slice CSV, summary rows, markdown/JSON and the console summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

from csmri.eval.console import print_summary
from csmri.eval.tables import (
    read_per_slice_csv,
    read_table_json,
    summarise_methods,
    write_per_slice_csv,
    write_table,
)
from csmri.metrics.stats import paired_wilcoxon

METHODS = ["zero_filled", "recnet", "refinement"]
KEYS = [f"p{p}/{s:03d}" for p in range(2) for s in range(6)]
STRUCTURE = {k for k in KEYS if int(k[-3:]) in (1, 2, 3, 4)}  # 8 of 12 slices contain the structure


def _records() -> tuple[list[dict], dict[str, float]]:
    rng = np.random.default_rng(0)
    quality = {
        "zero_filled": (24.0, 0.70, 0.55),
        "recnet": (32.0, 0.90, 0.70),
        "refinement": (31.0, 0.88, 0.78),
    }
    dice_gt = {k: float(rng.uniform(0.8, 0.9)) for k in sorted(STRUCTURE)}
    records = []
    for m in METHODS:
        psnr, ssim, dice = quality[m]
        for k in KEYS:
            records.append(
                {
                    "method": m,
                    "key": k,
                    "psnr": psnr + float(rng.normal(0, 1)),
                    "ssim": ssim + float(rng.normal(0, 0.02)),
                    "nmse": float(rng.uniform(0.01, 0.05)),
                    "hfen": float(rng.uniform(0.2, 0.6)),
                    "dice": dice + float(rng.normal(0, 0.03)) if k in STRUCTURE else None,
                }
            )
    return records, dice_gt


def _rows() -> list[dict]:
    records, dice_gt = _records()
    return summarise_methods(records, dice_gt, reference="refinement", methods_order=METHODS)


def test_summarise_methods_values() -> None:
    records, dice_gt = _records()
    rows = summarise_methods(records, dice_gt, reference="refinement", methods_order=METHODS)
    assert [r["method"] for r in rows] == ["ground_truth", *METHODS]
    gt = rows[0]
    assert gt["sis"] == 1.0 and gt["kind"] == "ground_truth"
    assert gt["dice_mean"] == pytest.approx(np.mean(list(dice_gt.values())))
    assert gt["n_slices"] == 12 and gt["n_structure"] == 8
    by = {r["method"]: r for r in rows}
    for m in METHODS:
        recs = {r["key"]: r for r in records if r["method"] == m}
        ref = {r["key"]: r for r in records if r["method"] == "refinement"}
        row = by[m]
        assert row["n_slices"] == 12 and row["n_structure"] == 8
        psnr = [recs[k]["psnr"] for k in KEYS]
        assert row["psnr_mean"] == pytest.approx(np.mean(psnr)) and row["psnr_std"] == pytest.approx(np.std(psnr))
        dice = [recs[k]["dice"] for k in sorted(STRUCTURE)]
        assert row["dice_mean"] == pytest.approx(np.mean(dice))
        assert row["sis"] == pytest.approx(np.mean(dice) / np.mean([dice_gt[k] for k in sorted(STRUCTURE)]))
        if m == "refinement":
            assert row["is_reference"] and row["p_psnr"] is None and row["p_dice"] is None
        else:
            assert row["p_psnr"] == pytest.approx(paired_wilcoxon(psnr, [ref[k]["psnr"] for k in KEYS]))
            keys = sorted(STRUCTURE)
            assert row["p_dice"] == pytest.approx(
                paired_wilcoxon([recs[k]["dice"] for k in keys], [ref[k]["dice"] for k in keys])
            )
            assert row["p_psnr"] < 0.01  # systematic differences on 12 pairs
    assert by["zero_filled"]["sis"] < by["recnet"]["sis"] < by["refinement"]["sis"] < 1.0
    # no reference: no tests
    assert all(r["p_psnr"] is None for r in summarise_methods(records, dice_gt))


def test_summarise_methods_errors() -> None:
    records, dice_gt = _records()
    with pytest.raises(ValueError, match="reference"):
        summarise_methods(records, dice_gt, reference="dagan")
    with pytest.raises(ValueError, match="ground-truth Dice"):
        summarise_methods(records, {k: v for k, v in list(dice_gt.items())[1:]})
    with pytest.raises(ValueError, match="duplicate"):
        summarise_methods([*records, records[0]], dice_gt)
    with pytest.raises(ValueError, match="no records"):
        summarise_methods([], dice_gt)
    with pytest.raises(ValueError, match="methods_order"):
        summarise_methods(records, dice_gt, methods_order=["dlmri"])


def test_markdown_bold_best_and_p_values(tmp_path) -> None:
    rows = _rows()
    md, js = write_table(rows, tmp_path / "table.md", tmp_path / "table.json")
    lines = md.read_text().splitlines()
    assert lines[0] == "| Method | PSNR (dB) | SSIM | SIS | Dice | p (PSNR) | p (Dice) |"
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:6]}
    assert set(cells) == {"Ground truth", "zero_filled", "recnet", "refinement (ref.)"}
    # recnet has the best PSNR/SSIM, refinement the best SIS/Dice; the Ground-truth row is never bold
    assert cells["recnet"][0].startswith("**") and cells["recnet"][1].startswith("**")
    assert cells["refinement (ref.)"][2].startswith("**") and cells["refinement (ref.)"][3].startswith("**")
    assert not any("**" in c for c in cells["Ground truth"])
    assert not any("**" in c for c in cells["zero_filled"])
    assert sum(line.count("**") for line in lines) == 4 * 2
    assert cells["Ground truth"][:3] == ["∞", "1", "1"]
    assert cells["refinement (ref.)"][4:] == ["—", "—"]
    assert cells["zero_filled"][4] == "<0.001"
    assert "Wilcoxon" in md.read_text()


def test_json_round_trip(tmp_path) -> None:
    rows = _rows()
    rows[1]["p_dice"] = float("nan")  # non-finite numbers become null (strict JSON)
    _, js = write_table(rows, tmp_path / "t.md", tmp_path / "t.json")
    payload = json.loads(js.read_text())
    assert payload["reference"] == "refinement"
    back = read_table_json(js)
    assert back[1]["p_dice"] is None
    rows[1]["p_dice"] = None
    assert back == rows  # full precision


def test_per_slice_csv_round_trip(tmp_path) -> None:
    records, _ = _records()
    path = write_per_slice_csv(records, tmp_path / "per_slice.csv")
    assert path.read_text().splitlines()[0] == "method,key,psnr,ssim,nmse,hfen,dice"
    back = read_per_slice_csv(path)
    assert len(back) == len(records)
    for a, b in zip(records, back, strict=True):
        assert a["method"] == b["method"] and a["key"] == b["key"]
        for f in ("psnr", "ssim", "nmse", "hfen"):
            assert a[f] == b[f]
        assert (a["dice"] is None and b["dice"] is None) or a["dice"] == b["dice"]
    nan_rec = [{**records[0], "dice": float("nan")}]
    assert read_per_slice_csv(write_per_slice_csv(nan_rec, tmp_path / "n.csv"))[0]["dice"] is None


def test_print_summary() -> None:
    console = Console(record=True, width=160)
    print_summary(_rows(), console=console)
    text = console.export_text()
    for name in ("Ground truth", "zero_filled", "recnet", "refinement (ref.)", "Wilcoxon", "8/12"):
        assert name in text
    assert "**" not in text
    assert not math.isnan(_rows()[1]["sis"])


def test_without_segmentation_net(tmp_path) -> None:
    """No Dice anywhere (SIS skipped): the table still renders, Dice/SIS as n/a."""
    records, _ = _records()
    records = [{**r, "dice": None} for r in records]
    rows = summarise_methods(records, {}, reference="refinement")
    assert math.isnan(rows[0]["sis"]) and all(math.isnan(r["sis"]) for r in rows)
    md, _ = write_table(rows, tmp_path / "t.md", tmp_path / "t.json")
    gt_line = md.read_text().splitlines()[2]
    assert gt_line.split("|")[3:6] == [" 1 ", " n/a ", " n/a "]


def test_footnote_lists_each_training_run_with_its_psnr_ssim_and_sis(tmp_path) -> None:
    """A method averaged over several runs: the footnote gives each run's PSNR (2 decimals) / SSIM / SIS (3), from its
    own summary row, in the runs' order — the only place a reader sees the spread over seeds."""
    rows = _rows()
    runs = {
        "refinement": [
            {"method": "refinement:seed0", "psnr_mean": 25.4712, "ssim_mean": 0.68149, "sis": 0.90049},
            {"method": "refinement:seed1", "psnr_mean": 25.4249, "ssim_mean": 0.6771, "sis": 0.8986},
        ]
    }
    md, _ = write_table(rows, tmp_path / "table.md", tmp_path / "table.json", runs=runs)
    assert (
        " refinement per training run (PSNR / SSIM / SIS): seed0 25.47 / 0.681 / 0.900; seed1 25.42 / 0.677 / 0.899."
    ) in md.read_text()
