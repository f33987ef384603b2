"""Stage 2 end to end: stage-1 checkpoint -> refinement training -> checkpoint -> resume."""

from __future__ import annotations

import json

import pytest
import torch

from csmri.app.train import build_module, train
from csmri.eval.methods import CheckpointMethod
from csmri.lit import RefinementModule
from csmri.lit.precision import resolve_feature_precision
from csmri.losses.normalizer import LossNormalizer
from tests.conftest import TINY_STAGE2
from tests.helpers import compose_config

FAST = [
    "logger=csv",
    "data.eval_batch_size=6",
    "data.acceleration=4",
    "data.batch_size=3",
    "trainer.log_every_n_steps=1",
]


def _config(phantom_root, stage1_ckpt, out, *extra):
    overrides = [
        "experiment=stage2",
        f"data.root={phantom_root}",
        f"model.recon_ckpt={stage1_ckpt}",
        *TINY_STAGE2,
        *FAST,
        *extra,
    ]
    return compose_config("train", overrides, out)


def _simulated_batch(phantom_root, n=3):
    from csmri.data import MRIDataModule

    dm = MRIDataModule(str(phantom_root), acceleration=4, batch_size=n)
    dm.setup("fit")
    return dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # no trainer: evaluation masks


def test_first_step_terms_and_zero_gate(phantom_root, stage1_ckpt, tmp_path):
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path))
    batch = _simulated_batch(phantom_root)
    base = module.base_reconstruction(batch)
    refined, x_v = module.refinement(base)
    assert torch.equal(refined, base)  # lambda = 0: x_hat == R(x_u) exactly
    assert not any(p.requires_grad for p in module.recon.parameters())

    from csmri.physics import complex_to_channels

    terms, _ = module.generator_terms(batch, refined, {"x_v": x_v}, complex_to_channels(batch["target"]))
    module.normalizer.initialise(terms)
    total, normalised = module.normalizer(terms)
    for key in ("adv_norm", "feat_norm", "vgg_norm"):
        assert normalised[key].item() == pytest.approx(1.0, rel=1e-5)
    assert normalised["pen_weighted"].item() == pytest.approx(0.1, rel=1e-5)

    # the visual terms give V no gradient at lambda = 0; only the penalty reaches it
    visual = terms["adv"] + terms["feat"] + terms["vgg"]
    refiner_params = list(module.refinement.refiner.parameters())
    grads = torch.autograd.grad(visual, refiner_params, allow_unused=True, retain_graph=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    assert torch.autograd.grad(visual, module.refinement.gate)[0] != 0


def test_training_moves_lambda_and_records_backbone(phantom_root, stage1_ckpt, tmp_path):
    cfg = _config(phantom_root, stage1_ckpt, tmp_path, "trainer.max_epochs=2")
    train(cfg)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["status"] == "finished" and info["perceptual_backbone"] == "vgg19-random"
    assert info["perceptual_precision"] == ("bf16" if resolve_feature_precision("auto", "cpu") else "32")
    ckpt_path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["perceptual_backbone"] == "vgg19-random"
    assert ckpt["perceptual_precision"] == info["perceptual_precision"]  # what the loss ran in, in the footnote too
    vgg = "bf16" if info["perceptual_precision"] == "bf16" else "fp32"
    assert CheckpointMethod(str(ckpt_path)).provenance.endswith(f"perceptual backbone vgg19-random run in {vgg}")
    assert ckpt["epoch"] == 1  # last.ckpt is the newest state even when val PSNR did not improve
    state = ckpt["state_dict"]
    assert abs(state["refinement.gate"].item()) > 0  # lambda moved away from 0
    assert not any(k.startswith("perceptual") for k in state)  # VGG is never checkpointed
    assert any(k.startswith("recon.") for k in state)  # R travels with the checkpoint
    assert state["normalizer.initialised"].item() and state["replay.count"].item() > 0
    assert list((tmp_path / "samples").glob("*.png")), "sample images were written"
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    for name in ("train/loss_d", "train/adv_norm", "train/vgg", "train/lambda", "train/d_real", "val/psnr"):
        assert name in header

    reloaded = RefinementModule.load_from_checkpoint(ckpt_path)  # no stage-1 file or arguments needed
    torch.testing.assert_close(reloaded.normalizer.scales, state["normalizer.scales"])
    torch.testing.assert_close(reloaded.replay.images, state["replay.images"])
    assert reloaded.refinement.gate.item() == state["refinement.gate"].item()
    batch = _simulated_batch(phantom_root)
    assert reloaded.eval().reconstruct(batch).shape == batch["target"].shape


def test_resume_keeps_normaliser_constants_lambda_and_buffer(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    first = tmp_path / "first"
    train(_config(phantom_root, stage1_ckpt, first, "trainer.max_epochs=1"))
    before = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    resumed = tmp_path / "resumed"
    cfg = _config(
        phantom_root, stage1_ckpt, resumed, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt"
    )

    seen = {}

    def spy(self, terms, reduce=None):  # must never be called again after resuming
        seen["initialise"] = True

    monkeypatch.setattr(LossNormalizer, "initialise", spy)
    train(cfg)
    assert "initialise" not in seen
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    torch.testing.assert_close(after["state_dict"]["normalizer.scales"], before["normalizer.scales"])
    assert after["epoch"] == 1 and after["state_dict"]["replay.count"] >= before["replay.count"]


def test_recon_ckpt_errors(phantom_root, stage1_ckpt, tmp_path):
    with pytest.raises(ValueError, match="model.recon_ckpt"):
        build_module(_config(phantom_root, "null", tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_module(_config(phantom_root, tmp_path / "nope.ckpt", tmp_path))
    stage2 = tmp_path / "stage2.ckpt"
    torch.save({"csmri_module": "refinement", "hyper_parameters": {}, "state_dict": {}}, stage2)
    with pytest.raises(ValueError, match="not a stage-1 checkpoint"):
        build_module(_config(phantom_root, stage2, tmp_path))


def test_imagenet_weights_required_without_fallback(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    from csmri.models.vgg import PerceptualWeightsUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    cfg = _config(
        phantom_root,
        stage1_ckpt,
        tmp_path,
        "model.perceptual.weights=imagenet",
        "model.perceptual.allow_random_fallback=false",
    )
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth") as err:
        build_module(cfg)
    assert isinstance(err.value.__cause__, PerceptualWeightsUnavailable)


def test_sweep_keys_reach_the_loss(phantom_root, stage1_ckpt, tmp_path):
    """The keys a sweep varies (`loss.alpha`, `loss.weights.vgg`, ...) are plain config keys."""
    cfg = _config(
        phantom_root,
        stage1_ckpt,
        tmp_path,
        "loss.alpha=0.5",
        "loss.weights.vgg=5",
        "loss.normalizer=fixed",
        "loss.label_smoothing=0.2",
        "loss.replay.capacity=7",
        "model.refine.gate_init=0.3",
    )
    module = build_module(cfg)
    assert module.normalizer.mode == "fixed" and module.normalizer.weights["vgg"] == 5.0
    assert module.normalizer.alpha.item() == 0.5 and not module.normalizer.auto_alpha
    assert module.d_loss.real_target == pytest.approx(0.8) and module.replay.capacity == 7
    assert module.refinement.gate.item() == pytest.approx(0.3)
