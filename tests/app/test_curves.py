"""`results/curves.png` and its sentences: each stage's validation curves, read from its CSV log."""

from __future__ import annotations

import csv
from pathlib import Path

from csmri.app.compare import mean_by_epoch, metric_by_epoch
from csmri.app.curves import r_lines, training_figure


def _log(run_dir: Path, rows: list[dict[str, object]]) -> Path:
    """A Lightning-style ``csv/metrics.csv``: one row per logging call, empty cells for what it did not log."""
    path = run_dir / "csv" / "metrics.csv"
    path.parent.mkdir(parents=True)
    columns = ["epoch", "step", *sorted({k for row in rows for k in row} - {"epoch", "step"})]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return run_dir


def test_each_epoch_keeps_the_last_value_logged_in_it(tmp_path):
    run = _log(
        tmp_path, [{"epoch": 0, "step": 9, "m": 1.0}, {"epoch": 0, "step": 19, "m": 2.0}, {"epoch": 1, "step": 29}]
    )
    assert metric_by_epoch(run, "m") == {0: 2.0}
    assert mean_by_epoch(run, "m") == {0: 1.5}  # every value logged in the epoch
    assert metric_by_epoch(run, "other") == {} and metric_by_epoch(tmp_path / "nothing", "m") == {}


def test_the_training_figure_describes_every_stage_with_a_curve(tmp_path):
    stage1 = _log(
        tmp_path / "stage1",
        [
            {"epoch": e, "step": 10 * e + 9, "val/psnr": p, "val/psnr_zero_filled": 19.0}
            for e, p in enumerate([20, 21, 21.5, 22])
        ],
    )
    stage2 = _log(
        tmp_path / "stage2",
        [
            {"epoch": 0, "step": 9, "train/lambda": -0.001},
            {"epoch": 0, "step": 19, "train/lambda": -0.01},
            {"epoch": 0, "step": 19, "val/psnr": 23.9, "val/psnr_recon": 24.1},
            {"epoch": 1, "step": 29, "train/lambda": 0.02},
            {"epoch": 1, "step": 39, "val/psnr": 23.1, "val/psnr_recon": 24.1},
        ],
    )
    dagan = _log(tmp_path / "dagan", [{"epoch": e, "step": e, "val/nmse": v} for e, v in enumerate([0.24, 0.23, 0.25])])
    segnet = _log(tmp_path / "segnet", [{"epoch": 0, "step": 0, "val/dice": 0.9}])
    stages = {
        "dagan": ("dagan", dagan),  # panels in the order stage 1, stage 2, DAGAN, whatever the profile's order
        "segnet": ("segnet", segnet),  # no panel for a segmentation net
        "stage1": ("stage1", stage1),
        "stage2": ("stage2", stage2),
        "perceptual": ("vgg_autoencoder", tmp_path / "no_log"),
    }
    path, sentences = training_figure(stages, tmp_path / "results" / "curves.png")
    assert path.stat().st_size > 0
    assert sentences == [
        "stage 1: validation PSNR 20.00 → 22.00 dB in 4 epochs (zero-filled 19.00 dB); "
        "its last 1 epoch(s) added +0.50 dB",
        "stage 2: validation PSNR per epoch 23.90, 23.10 against R's 24.10 dB; "
        "λ as last logged in each epoch -0.010, +0.020",
        "DAGAN: validation NMSE per epoch 0.2400, 0.2300, 0.2500; lowest at epoch 1",
    ]
    assert training_figure({"stage1": ("stage1", tmp_path / "no_log")}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_the_refinements_runs_share_a_panel_and_are_named(tmp_path):
    runs = {
        name: _log(
            tmp_path / name,
            [
                {"epoch": e, "step": e, "val/psnr": p, "val/psnr_recon": 24.0, "train/lambda": lam}
                for e, p in enumerate(psnr)
            ],
        )
        for name, psnr, lam in (("stage2", [23.0, 22.0], -0.01), ("stage2_seed1", [23.5, 23.4], 0.02))
    }
    stages = {name: ("stage2", run_dir) for name, run_dir in runs.items()}
    path, sentences = training_figure(stages, tmp_path / "curves.png")
    assert path.stat().st_size > 0
    assert sentences == [
        "stage 2 (stage2): validation PSNR per epoch 23.00, 22.00 against R's 24.00 dB; "
        "λ as last logged in each epoch -0.010, -0.010",
        "stage 2 (stage2_seed1): validation PSNR per epoch 23.50, 23.40 against R's 24.00 dB; "
        "λ as last logged in each epoch +0.020, +0.020",
    ]


def test_stage2_runs_share_one_r_line_when_validated_on_the_same_masks():
    def run(recon: list[float]) -> dict[str, dict[int, float]]:
        return {"psnr": {0: 23.0}, "recon": dict(enumerate(recon)), "lambda": {}}

    same = [("stage2", run([25.48])), ("stage2_seed1", run([25.48]))]
    assert r_lines(same) == [("R", 25.48, None)]
    differ = [("stage2", run([25.4, 25.48])), ("stage2_seed1", run([25.32])), ("old", run([]))]
    assert r_lines(differ) == [("R (stage2's masks)", 25.48, 0), ("R (stage2_seed1's masks)", 25.32, 1)]
    assert r_lines([("old", run([]))]) == []
