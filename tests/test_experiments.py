"""The experiment scripts at least import against today's package layout (most are not run in tests: they take
minutes); the cheap summaries are run on hand-made run folders."""

from __future__ import annotations

import argparse
import importlib
import json

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "bench",
        "precision_parity",
        "seitzer2018.dlmri_study",
        "seitzer2018.refinement_diagnostics",
        "seitzer2018.stage2_long",
        "seitzer2018.discriminator_scale",
        "seitzer2018.gate_study",
        "seitzer2018.sis_diagnosis",
    ],
)
def test_experiment_script_imports(name):
    module = importlib.import_module(f"experiments.{name}")
    assert callable(module.main)


def test_refinement_alignment_on_hand_made_outputs():
    import torch

    from experiments.seitzer2018.refinement_diagnostics import alignment

    base = torch.zeros(3, 2, 4, 4)
    base[:, 0, 0, 0] = 1.0  # R: one bright pixel (real channel)
    residual = torch.zeros(3, 2, 4, 4)
    residual[:, 1, 2, 3] = 0.5  # R's error: elsewhere (imaginary channel)
    x_v = torch.stack([residual[0] * 4, -base[1] * 2, base[2] + residual[2] * 2])  # a correction, a dimming, a mix
    out = alignment(x_v, base, residual)
    torch.testing.assert_close(out["cos_v_residual"], torch.tensor([1.0, 0.0, 2**-0.5]))
    torch.testing.assert_close(out["cos_v_R"], torch.tensor([0.0, -1.0, 2**-0.5]))
    torch.testing.assert_close(out["mean_abs_v"], torch.tensor([2.0, 2.0, 2.0]) / 32)
    torch.testing.assert_close(out["cos_gated_residual"], out["cos_v_residual"])  # gate 1: V's output as it is
    # slice 0: x_V = 4 r, so R + s * g * x_V = x needs g = 1 / (4 s); slice 1 is orthogonal to r; slice 2: x_V = R + 2 r
    # with |R| = 1, |r|^2 = 1/4: <x_V, r> = 1/2, |x_V|^2 = 1 + 1 = 2 -> g = 1 / (4 s)
    scale = torch.tensor([2.0, 1.0, 0.5])
    out = alignment(x_v, base, residual, gate=-0.1, scale=scale)
    torch.testing.assert_close(out["cos_gated_residual"], -torch.tensor([1.0, 0.0, 2**-0.5]))
    torch.testing.assert_close(out["best_gate"], torch.tensor([1 / 8, 0.0, 1 / 2]))


def test_discriminator_scale_table_lists_each_runs_checkpoints(tmp_path):
    from experiments.seitzer2018.discriminator_scale import _run, table

    def run(psnr: float, d_fake: float) -> dict:
        scores = {"ref_psnr": psnr, "ref_ssim": 0.5, "ref_sis": 0.25, "recnet_psnr": 25.0, "recnet_ssim": 0.6}
        return {"checkpoints": {2: {**scores, "recnet_sis": 0.875}}, "lambda": {2: -0.03}, "d_fake": {2: d_fake}}

    text = table({"4x4": run(24.0, 0.125), "16x16": run(24.5, 0.375)})
    assert "| 4x4 | 2 | 24.00 | 0.500 | 0.250 | -0.030 | 0.125 |" in text
    assert "| 16x16 | 2 | 24.50 | 0.500 | 0.250 | -0.030 | 0.375 |" in text
    assert text.splitlines()[-1] == "| RecNet (R) | | 25.00 | 0.600 | 0.875 | | |"
    assert _run(f"paper D (4x4)={tmp_path}") == ("paper D (4x4)", tmp_path)
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=RUN_DIR"):
        _run(str(tmp_path))


def test_stage2_long_compares_runs_epoch_by_epoch(tmp_path, capsys):
    from experiments.seitzer2018 import stage2_long

    def run(name: str, rows: list[dict], sis: dict[int, float]) -> str:
        folder = tmp_path / name
        (folder / "csv").mkdir(parents=True)
        fields = ["epoch", "step", "train/lambda", "val/psnr", "val/psnr_recon", "val/correction", "val/d_real"]
        fields += ["val/d_fake"]
        lines = [",".join(fields)] + [",".join(str(r.get(f, "")) for f in fields) for r in rows]
        (folder / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
        for epoch, value in sis.items():
            table = {
                "rows": [
                    {"method": m, "psnr_mean": 23.0, "ssim_mean": 0.6, "sis": v}
                    for m, v in (("refinement", value), ("recnet", 0.8))
                ]
            }
            (folder / f"eval_epoch{epoch:02d}").mkdir()
            (folder / f"eval_epoch{epoch:02d}" / "table.json").write_text(json.dumps(table))
        return f"{name}={folder}"

    a = run(
        "a",
        [
            {"epoch": 0, "step": 9, "train/lambda": -0.01},  # a training row, then the epoch's validation
            {
                "epoch": 0,
                "step": 9,
                "val/psnr": 22.5,
                "val/psnr_recon": 23.1,
                "val/correction": 0.1,
                "val/d_real": 0.41,
                "val/d_fake": 0.39,
            },
            {"epoch": 1, "step": 19, "train/lambda": -0.02},
            {
                "epoch": 1,
                "step": 19,
                "val/psnr": 22.25,
                "val/psnr_recon": 23.1,
                "val/correction": 0.15,
                "val/d_real": 0.42,
                "val/d_fake": 0.4,
            },
        ],
        {1: 0.81},
    )
    b = run(
        "b",
        [
            {"epoch": 0, "step": 9, "train/lambda": -0.06},
            {"epoch": 0, "step": 9, "val/psnr": 21.5, "val/correction": 0.36, "val/d_real": 0.4, "val/d_fake": 0.5},
        ],
        {0: 0.7},
    )
    figure = tmp_path / "cmp.png"
    assert stage2_long.main(["--compare", a, b, "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "## a" in out and "## b" in out and figure.stat().st_size > 10_000
    assert "1 | 22.25 | -0.0200 | 0.150 | 0.420 / 0.400 |" in out and out.count("/ 0.810") == 1
    assert "0 | 21.50 | -0.0600 | 0.360 | 0.400 / 0.500 |" in out and "/ 0.700" in out
    with pytest.raises(SystemExit):
        stage2_long.main(["--compare", "no-label"])
