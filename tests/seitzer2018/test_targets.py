"""The calibration targets and the paper's claims, checked on hand-made Table-1 rows."""

from __future__ import annotations

import math

from experiments.seitzer2018.targets import check_targets, targets_markdown


def _rows(**changes):
    # the paper's Table 1 (PSNR, SIS, Dice on ground truth 0.796; zero-filling is not in it: 26 dB here)
    rows = {
        "ground_truth": {"method": "ground_truth", "dice_mean": 0.796, "sis": 1.0, "psnr_mean": None},
        "zero_filled": {"method": "zero_filled", "psnr_mean": 26.0, "sis": 0.1, "p_dice": 1e-5},
        "recnet": {"method": "recnet", "psnr_mean": 32.46, "sis": 0.801, "p_dice": 0.004},
        "dlmri": {"method": "dlmri", "psnr_mean": 31.45, "sis": 0.842, "p_dice": 0.02},
        "dagan": {"method": "dagan", "psnr_mean": 28.41, "sis": 0.812, "p_dice": 1e-4},
        "refinement": {"method": "refinement", "psnr_mean": 31.89, "sis": 0.941, "p_dice": None, "is_reference": True},
    }
    for key, fields in changes.items():
        if fields is None:
            del rows[key]
        else:
            rows[key] = {**rows[key], **fields}
    return list(rows.values())


def test_the_papers_table_meets_every_target():
    checks = check_targets(_rows())
    assert [c.status for c in checks] == ["met"] * 8
    assert [c.measured for c in checks][:3] == ["+6.46 dB", "0.796", "0.801"]
    assert checks[3].measured == "0.941 vs 0.801, p = 0.004" and checks[4].measured == "-0.57 dB"
    assert checks[5].measured == "zero-filled +2.41 dB, RecNet -4.05 dB"
    assert [c.measured for c in checks[6:]] == ["+0.041", "+0.011"]  # DLMRI, DAGAN
    assert check_targets(_rows(recnet={"p_dice": 2e-4}))[3].measured == "0.941 vs 0.801, p < 0.001"
    assert check_targets(_rows(recnet={"p_dice": 1e-3}))[3].measured == "0.941 vs 0.801, p = 0.001"
    assert [c.kind for c in checks] == ["calibration"] * 3 + ["claim"] * 5
    assert [c.target for c in checks] == [
        "RecNet PSNR ≥ zero-filled + 5 dB",
        "segmentation Dice on fully-sampled images in [0.75, 0.85] (paper 0.796)",
        "RecNet SIS in [0.6, 0.9] (paper 0.80)",
        "refinement SIS > RecNet SIS, paired Wilcoxon on per-slice Dice p < 0.01",
        "refinement PSNR ≥ RecNet − 1 dB",
        "DAGAN PSNR in [zero-filled + 1 dB, RecNet − 1 dB]",
        "DLMRI SIS within 0.15 of RecNet's",
        "DAGAN SIS within 0.15 of RecNet's",
    ]
    table = targets_markdown(checks).splitlines()
    assert table[:2] == ["| | target | measured | |", "|---|---|---|---|"] and len(table) == 10
    assert table[2] == "| calibration | RecNet PSNR ≥ zero-filled + 5 dB | +6.46 dB | **met** |"


def test_each_target_fails_on_its_own_boundary():
    statuses = [c.status for c in check_targets(_rows(recnet={"psnr_mean": 30.99}))]
    assert statuses[0] == "not met" and statuses[4] == "met"  # 4.99 dB gain; refinement now above RecNet
    assert check_targets(_rows(ground_truth={"dice_mean": 0.749}))[1].status == "not met"
    assert check_targets(_rows(ground_truth={"dice_mean": 0.851}))[1].status == "not met"  # the phantom's 0.967
    assert check_targets(_rows(ground_truth={"dice_mean": 0.85}))[1].status == "met"
    assert check_targets(_rows(recnet={"sis": 0.91}))[2].status == "not met"
    assert check_targets(_rows(recnet={"sis": 0.9}))[2].status == "met"
    assert check_targets(_rows(recnet={"p_dice": 0.011}))[3].status == "not met"  # higher SIS, not significant
    assert check_targets(_rows(refinement={"sis": 0.79}))[3].status == "not met"  # significant, the other way
    assert check_targets(_rows(refinement={"psnr_mean": 31.45}))[4].status == "not met"  # 1.01 dB below RecNet
    assert check_targets(_rows(dagan={"psnr_mean": 26.99}))[5].status == "not met"  # 0.99 dB over zero-filling
    assert check_targets(_rows(dagan={"psnr_mean": 31.47}))[5].status == "not met"  # 0.99 dB under RecNet
    assert check_targets(_rows(dagan={"psnr_mean": 27.0}))[5].status == "met"
    assert check_targets(_rows(dlmri={"sis": 0.65}))[6].status == "not met"  # 0.151 under RecNet
    assert check_targets(_rows(dagan={"sis": 0.952}))[7].status == "not met"  # 0.151 over it
    assert check_targets(_rows(dagan={"sis": 0.951}))[7].status == "met"


def test_each_range_includes_its_ends_exactly():
    """Every target's bound is inclusive (the targets read "≥", "within", "in [a, b]"), except the significance level
    (p < 0.01); the values here are exact in binary floating point (31 − 26 = 5, 0.1 − 0.25 = −0.15)."""
    at = lambda i, **changes: check_targets(_rows(**changes))[i].status  # noqa: E731
    assert at(0, zero_filled={"psnr_mean": 26.0}, recnet={"psnr_mean": 31.0}) == "met"  # a gain of 5 dB
    assert at(1, ground_truth={"dice_mean": 0.75}) == "met"
    assert at(2, recnet={"sis": 0.6}) == "met"
    assert at(3, recnet={"p_dice": 0.01}) == "not met"
    assert at(3, refinement={"sis": 0.801}) == "not met"  # equal SIS is no gain, whatever p says
    assert at(4, recnet={"psnr_mean": 32.5}, refinement={"psnr_mean": 31.5}) == "met"  # 1 dB below RecNet
    assert at(5, recnet={"psnr_mean": 32.5}, dagan={"psnr_mean": 31.5}) == "met"  # 1 dB below RecNet
    for method in ("dlmri", "dagan"):  # 0.15 under RecNet's SIS, and over it
        index = 6 if method == "dlmri" else 7
        assert at(index, recnet={"sis": 0.25}, **{method: {"sis": 0.1}}) == "met"
        assert at(index, recnet={"sis": 0.1}, **{method: {"sis": 0.25}}) == "met"


def test_missing_methods_are_not_applicable_never_met():
    checks = check_targets(_rows(dagan=None, zero_filled=None, recnet={"sis": math.nan}))
    assert [c.status for c in checks] == ["n/a", "met", "n/a", "n/a", "met", "n/a", "n/a", "n/a"]
    # RecNet's p-value against another reference says nothing about the refinement
    assert check_targets(_rows(refinement={"is_reference": False}))[3].status == "n/a"
    without_recnet = check_targets(_rows(recnet=None))  # every check that needs RecNet, and only those
    assert [c.status for c in without_recnet] == ["n/a", "met", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
    # DAGAN's band needs zero-filling and RecNet, not the refinement
    assert check_targets(_rows(refinement=None))[5].status == "met"
    table = targets_markdown(checks)
    assert table.count("\n") == 9 and "| claim | DAGAN SIS within 0.15 of RecNet's | n/a | **n/a** |" in table


def test_the_console_prints_each_target_literally():
    """The targets' texts hold brackets (``[0.75, 0.85]``, ``[zero-filled + 1 dB, RecNet − 1 dB]``) that rich would
    otherwise take for markup and drop."""
    from rich.console import Console

    from experiments.seitzer2018.results import print_checks

    checks = check_targets(_rows())
    out = Console(record=True, width=300)
    print_checks(checks, out)
    lines = out.export_text().splitlines()
    assert len(lines) == len(checks)
    for line, check in zip(lines, checks, strict=True):
        assert line == f"  {check.kind}: {check.target}: {check.measured} → met"
    assert "[zero-filled + 1 dB, RecNet − 1 dB]" in lines[5]
