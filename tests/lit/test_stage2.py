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
from tests.helpers import TINY_STAGE2, train_config

FAST = [  # besides FAST_TRAIN (one epoch, CSV logs)
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
    return train_config(overrides, out)


def _simulated_batch(phantom_root, n=3):
    from csmri.data import MRIDataModule

    dm = MRIDataModule(str(phantom_root), acceleration=4, batch_size=n)
    dm.setup("fit")
    return dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # no trainer: evaluation masks


def test_first_step_terms_and_zero_gate(phantom_root, stage1_ckpt, tmp_path):
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path)).eval()  # eval: D's dropout off
    batch = _simulated_batch(phantom_root)
    base = module.base_reconstruction(batch)
    refined, x_v = module.refinement(base)
    assert torch.equal(refined, base)  # lambda = 0: x_hat == R(x_u) exactly
    assert not any(p.requires_grad for p in module.recon.parameters())

    from csmri.physics import complex_to_channels

    target = complex_to_channels(batch["target"])
    terms, _ = module.generator_terms(batch, refined, {"x_v": x_v}, target)
    module.normalizer.initialise(terms)

    # the raw first-step terms, computed here from D, the VGG extractor and V's output directly
    def mag(channels):
        return torch.sqrt(channels[:, 0] ** 2 + channels[:, 1] ** 2)

    with torch.no_grad():
        fake_logits, fake_maps = module.discriminator(mag(refined).unsqueeze(1))
        _, real_maps = module.discriminator(mag(target).unsqueeze(1))
        adv = -torch.nn.functional.logsigmoid(fake_logits).mean()  # non-saturating: -log D(x_hat)
        feat = sum((f - r).abs().mean() for f, r in zip(fake_maps, real_maps, strict=True)) / len(real_maps)
        extractor = module.perceptual.extractor
        vgg = ((extractor(mag(refined)) - extractor(mag(target))) ** 2).mean()
        pen = x_v.abs().mean()
    # M, N, O are the first step's adv, feat and vgg terms, each its own; alpha = 0.1 / L_pen
    scales = module.normalizer.scales
    assert module.normalizer.names == ("adv", "feat", "vgg")
    for got, want in zip(scales.tolist(), (adv, feat, vgg), strict=True):
        assert got == pytest.approx(want.item(), rel=1e-4)
    assert len({round(v, 6) for v in scales.tolist()}) == 3  # distinct: a constant taken from another term differs
    assert module.normalizer.alpha.item() == pytest.approx(0.1 / pen.item(), rel=1e-5)
    total, normalised = module.normalizer(terms)
    assert normalised["pen_weighted"].item() == pytest.approx(0.1, rel=1e-5)  # alpha * L_pen = 0.1 at step one
    assert total.item() == pytest.approx(0.5 + 0.5 + 1.0 + 0.1, rel=1e-5)  # 1/2 (1 + 1) + 1 + 0.1

    # the visual terms give V no gradient at lambda = 0; only the penalty reaches it
    visual = terms["adv"] + terms["feat"] + terms["vgg"]
    refiner_params = list(module.refinement.refiner.parameters())
    grads = torch.autograd.grad(visual, refiner_params, allow_unused=True, retain_graph=True)
    assert all(g is None or torch.all(g == 0) for g in grads)
    assert torch.autograd.grad(visual, module.refinement.gate)[0] != 0


def test_first_adam_step_moves_lambda_by_the_learning_rate(phantom_root, stage1_ckpt, tmp_path):
    """Adam's first step moves a parameter by lr * m_hat / (sqrt(v_hat) + eps) with m_hat = g and v_hat = g^2 after
    bias correction (m_1 = (1 - b1) g, v_1 = (1 - b2) g^2), i.e. by lr * g / (|g| + eps): |lambda_1 - 0| = lr for any
    gradient |g| >> eps = 1e-8. The paper's lr: 2e-4."""
    cfg = _config(phantom_root, stage1_ckpt, tmp_path, "+trainer.limit_train_batches=1")
    train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2  # one batch: one D and one V step
    gate = ckpt["state_dict"]["refinement.gate"].item()
    assert abs(gate) == pytest.approx(2e-4, rel=1e-4)


def _capture_modules(monkeypatch) -> list:
    """The modules ``csmri.app.train`` builds from now on (appended as they are built)."""
    import csmri.app.train as app

    built, original = [], app.build_module

    def build(cfg):
        built.append(original(cfg))
        return built[-1]

    monkeypatch.setattr(app, "build_module", build)
    return built


@pytest.mark.slow
def test_training_moves_lambda_and_records_backbone(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    cfg = _config(phantom_root, stage1_ckpt, tmp_path, "trainer.max_epochs=2")
    built = _capture_modules(monkeypatch)
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
    # R is frozen: after training, the module's and the checkpoint's R equal the stage-1 checkpoint bit for bit
    stage1 = torch.load(stage1_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    expected_r = {k.removeprefix("net."): v for k, v in stage1.items() if k.startswith("net.")}
    (module,) = built
    for where, r_state in [
        ("checkpoint", {k.removeprefix("recon."): v for k, v in state.items() if k.startswith("recon.")}),
        ("module", module.recon.state_dict()),
    ]:
        assert r_state.keys() == expected_r.keys(), where
        changed = [k for k in expected_r if not torch.equal(r_state[k], expected_r[k])]
        assert not changed, (where, changed)
    assert not any(p.requires_grad for p in module.recon.parameters()) and not module.recon.training
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


@pytest.mark.slow
def test_resume_keeps_normaliser_constants_lambda_and_buffer(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    first = tmp_path / "first"
    train(_config(phantom_root, stage1_ckpt, first))
    before = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert int(before["replay.count"]) > 0 and bool(before["normalizer.initialised"])
    resumed = tmp_path / "resumed"
    cfg = _config(
        phantom_root, stage1_ckpt, resumed, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt"
    )

    seen = {}

    def spy(self, terms, reduce=None):  # must never be called again after resuming
        seen["initialise"] = True

    monkeypatch.setattr(LossNormalizer, "initialise", spy)
    built = _capture_modules(monkeypatch)
    at_start = {}

    def record_at_train_start(module):  # the state training continues from, after every setup hook
        original = module.on_train_start

        def hook():
            original()
            at_start.update({k: v.detach().clone() for k, v in module.state_dict().items()})

        module.on_train_start = hook

    import csmri.app.train as app

    build = app.build_module
    monkeypatch.setattr(app, "build_module", lambda c: (m := build(c), record_at_train_start(m))[0])
    train(cfg)
    assert "initialise" not in seen and len(built) == 1
    for key in ("replay.images", "replay.count", "normalizer.scales", "normalizer.alpha", "refinement.gate"):
        assert torch.equal(at_start[key], before[key]), key  # bit for bit, not merely "not reset"
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["epoch"] == 1
    torch.testing.assert_close(after["state_dict"]["normalizer.scales"], before["normalizer.scales"], rtol=0, atol=0)


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
    from csmri.errors import PerceptualWeightsUnavailable

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
