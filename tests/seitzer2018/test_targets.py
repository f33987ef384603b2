"""The calibration targets and the paper's claims, checked on hand-made Table-1 rows."""

from __future__ import annotations

import math

from experiments.seitzer2018.targets import check_targets, targets_markdown


def _rows(**changes):
    rows = {
        "ground_truth": {"method": "ground_truth", "dice_mean": 0.80, "sis": 1.0, "psnr_mean": None},
        "zero_filled": {"method": "zero_filled", "psnr_mean": 20.0, "sis": 0.1, "p_dice": 1e-5},
        "recnet": {"method": "recnet", "psnr_mean": 26.0, "sis": 0.80, "p_dice": 0.004},
        "dagan": {"method": "dagan", "psnr_mean": 22.0, "sis": 0.5, "p_dice": 1e-4},
        "refinement": {"method": "refinement", "psnr_mean": 25.5, "sis": 0.94, "p_dice": None, "is_reference": True},
    }
    for key, fields in changes.items():
        if fields is None:
            del rows[key]
        else:
            rows[key] = {**rows[key], **fields}
    return list(rows.values())


def test_the_papers_table_meets_every_target():
    checks = check_targets(_rows())  # the paper's Table 1, roughly: +6 dB, Dice 0.80, SIS .80 -> .94 at -0.5 dB
    assert [c.status for c in checks] == ["met"] * 6
    assert [c.measured for c in checks][:3] == ["+6.00 dB", "0.800", "0.800"]
    assert checks[3].measured == "0.940 vs 0.800, p = 0.004" and checks[4].measured == "-0.50 dB"
    assert check_targets(_rows(recnet={"p_dice": 2e-4}))[3].measured == "0.940 vs 0.800, p < 0.001"


def test_each_target_fails_on_its_own_boundary():
    statuses = [c.status for c in check_targets(_rows(recnet={"psnr_mean": 24.99}))]
    assert statuses[0] == "not met" and statuses[4] == "met"  # 4.99 dB gain; refinement now above RecNet
    assert check_targets(_rows(ground_truth={"dice_mean": 0.749}))[1].status == "not met"
    assert check_targets(_rows(recnet={"sis": 0.91}))[2].status == "not met"
    assert check_targets(_rows(recnet={"sis": 0.9}))[2].status == "met"
    assert check_targets(_rows(recnet={"p_dice": 0.011}))[3].status == "not met"  # higher SIS, not significant
    assert check_targets(_rows(refinement={"sis": 0.79}))[3].status == "not met"  # significant, the other way
    assert check_targets(_rows(refinement={"psnr_mean": 24.99}))[4].status == "not met"  # 1.01 dB below RecNet
    assert check_targets(_rows(dagan={"psnr_mean": 26.0}))[5].status == "not met"


def test_missing_methods_are_not_applicable_never_met():
    checks = check_targets(_rows(dagan=None, zero_filled=None, recnet={"sis": math.nan}))
    assert [c.status for c in checks] == ["n/a", "met", "n/a", "n/a", "met", "n/a"]
    # RecNet's p-value against another reference says nothing about the refinement
    assert check_targets(_rows(refinement={"is_reference": False}))[3].status == "n/a"
    table = targets_markdown(checks)
    assert table.count("\n") == 7 and "| claim | DAGAN PSNR < RecNet PSNR | n/a | **n/a** |" in table
