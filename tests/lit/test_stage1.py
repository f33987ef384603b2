"""Stage 1 end to end: Hydra config -> training -> checkpoints -> reload."""

from __future__ import annotations

import json

import pytest
import torch

from csmri.app.train import train
from csmri.lit import ReconstructionModule
from tests.helpers import run_csmri, simulated_batch, train_config

FAST = ["data.batch_size=4", "data.eval_batch_size=6", "data.acceleration=4"]


def test_fast_dev_run(phantom_root, tmp_path):
    cfg = train_config(["experiment=stage1", f"data.root={phantom_root}", "trainer.fast_dev_run=1", *FAST], tmp_path)
    train(cfg)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["status"] == "finished" and info["seed"] == 0
    assert info["packages"]["torch"] and "commit" in info["git"]
    assert info["cpu_threads"] == torch.get_num_threads()  # results depend on it (summation order in fp32)


def test_two_epochs_val_loss_decreases_and_checkpoint_reloads(phantom_root, tmp_path):
    overrides = [
        "experiment=stage1",
        f"data.root={phantom_root}",
        "trainer.max_epochs=2",
        "model.optimizer.lr=1e-3",
        *FAST,
    ]
    cfg = train_config(overrides, tmp_path)
    train(cfg)
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val = [float(r.split(",")[header.index("val/loss")]) for r in rows[1:] if r.split(",")[header.index("val/loss")]]
    assert len(val) == 2 and val[1] < val[0]

    best = tmp_path / "checkpoints" / "best.ckpt"
    assert best.is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    module = ReconstructionModule.load_from_checkpoint(best)  # no extra arguments needed
    assert module.net.blocks[0][0].out_channels == 32
    batch = {
        "zero_filled": torch.randn(1, 64, 64, dtype=torch.complex64),
        "kspace": torch.zeros(1, 64, 64, dtype=torch.complex64),
        "mask": torch.zeros(1, 64, 64),
    }
    assert module.reconstruct(batch).shape == (1, 64, 64)


@pytest.mark.slow
def test_cli_acceptance(phantom_root, tmp_path):
    """The issue's acceptance command: run dir placement, checkpoint, resolved config, model.net.nf."""
    run_dir = tmp_path / "run"
    args = [
        "train",
        "experiment=stage1",
        f"data.root={phantom_root}",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        "model.net.nf=16",
        "logger=csv",
    ]
    result = run_csmri(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "nf: 16" in (run_dir / ".hydra" / "config.yaml").read_text()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["state_dict"]["net.blocks.0.0.weight"].shape[0] == 16

    typo = run_csmri(*args[:-2], "model.nff=3")
    assert typo.returncode != 0 and "model.nff" in typo.stderr


def test_released_code_variant_with_weighted_dc_trains(phantom_root, tmp_path):
    switches = ["model.net.residual=false", "model.net.dc_nu=10.0", "data.noise_std=0.01"]
    cfg = train_config(
        ["experiment=stage1", f"data.root={phantom_root}", "trainer.fast_dev_run=1", *switches, *FAST],
        tmp_path,
    )
    train(cfg)
    assert (tmp_path / "run_info.json").is_file()


def test_the_training_loss_is_the_mse_to_the_fully_sampled_image(phantom_root, tmp_path):
    """Stage 1 trains R with the MSE between its 2-channel output and the ground truth (the paper's stage 1), written
    out here: not the zero-filled input, not magnitudes."""
    from csmri.app.train import build_module
    from csmri.physics import complex_to_channels

    module = build_module(train_config([f"data.root={phantom_root}"], tmp_path))
    module.log = lambda *args, **kwargs: None
    batch = simulated_batch(phantom_root)
    loss = module.training_step(batch, 0)
    with torch.no_grad():
        output = module.generate(batch)[0].float()
    target = complex_to_channels(batch["target"])
    assert loss.item() == pytest.approx(((output - target) ** 2).mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(
        ((output - complex_to_channels(batch["zero_filled"])) ** 2).mean().item(), rel=1e-3
    )


@pytest.mark.slow
def test_an_lr_schedule_steps_once_per_epoch(phantom_root, tmp_path):
    """``model.scheduler`` halves stage 1's learning rate once per epoch, not once per batch: after 2 epochs of 2
    batches each, lr = 2e-4 / 4."""
    cfg = train_config(
        [
            f"data.root={phantom_root}",
            "model.net.nf=8",
            "data.batch_size=1",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "model.scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 0.5}",
        ],
        tmp_path,
    )
    train(cfg)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 4)


def test_the_logged_zero_filled_psnr_is_the_zero_filled_images(phantom_root, tmp_path):
    """``val/psnr_zero_filled`` (stage 1's baseline in the training curves) is the mean per-slice PSNR of the
    zero-filled magnitudes against the ground truth, not of R's output."""
    from csmri.app.train import build_module
    from csmri.metrics.image import magnitude, psnr

    module = build_module(train_config([f"data.root={phantom_root}"], tmp_path)).eval()
    module.log = lambda *args, **kwargs: None
    batch = simulated_batch(phantom_root)
    with torch.no_grad():
        module.validation_step(batch, 1)  # not the first batch: no sample images (they need a Trainer)
    expected = psnr(magnitude(batch["zero_filled"]), magnitude(batch["target"])).mean()
    assert module.val_psnr_zf.compute().item() == pytest.approx(expected.item(), rel=1e-6)
