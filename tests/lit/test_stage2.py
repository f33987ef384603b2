"""Stage 2 end to end: stage-1 checkpoint -> refinement training -> checkpoint -> resume."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from csmri.app.train import build_module, train
from csmri.eval.methods import CheckpointMethod
from csmri.lit import RefinementModule
from csmri.lit.precision import resolve_feature_precision
from csmri.losses.normalizer import LossNormalizer
from csmri.physics import complex_to_channels
from csmri.run_info import perceptual_precision_label
from tests.helpers import TINY_STAGE2, capture_modules, simulated_batch, train_config

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
        f"model.net.recon_ckpt={stage1_ckpt}",
        *TINY_STAGE2,
        *FAST,
        *extra,
    ]
    return train_config(overrides, out)


GATE_METRICS = ("val/lambda", "val/correction", "val/d_real", "val/d_fake")


def _validation_rows(metrics_csv) -> list[dict[str, str]]:
    """The rows of ``metrics.csv`` that hold the validation epoch's metrics."""
    with open(metrics_csv, newline="") as file:
        return [row for row in csv.DictReader(file) if row.get("val/psnr")]


def test_first_step_terms_and_zero_gate(phantom_root, stage1_ckpt, tmp_path):
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path)).eval()  # eval: D's dropout off
    batch = simulated_batch(phantom_root)
    base = module.base_reconstruction(batch)
    refined, x_v = module.refinement(base)
    assert torch.equal(refined, base)  # lambda = 0: x_hat == R(x_u) exactly
    assert not any(p.requires_grad for p in module.recon.parameters())

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


def _groups(optimizer) -> dict[str, tuple[float, list]]:
    return {g.get("name", str(i)): (g["lr"], g["params"]) for i, g in enumerate(optimizer.param_groups)}


def test_gate_has_its_own_parameter_group_at_the_default_lr(phantom_root, stage1_ckpt, tmp_path):
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path))
    assert module.hparams.gate_lr_multiplier == 1.0  # the paper: lambda learns at V's rate
    opt_g, opt_d = module.configure_optimizers()
    groups = _groups(opt_g)
    assert sorted(groups) == ["gate", "refiner"]
    assert [lr for lr, _ in groups.values()] == [2e-4, 2e-4]  # every group at the configured lr
    assert [lr for lr, _ in _groups(opt_d).values()] == [2e-4]
    gate = module.refinement.gate
    assert len(groups["gate"][1]) == 1 and groups["gate"][1][0] is gate
    refiner = {id(p) for p in module.refinement.refiner.parameters()}
    assert {id(p) for p in groups["refiner"][1]} == refiner  # V's weights, all of them, without lambda
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {
        id(p) for p in module.discriminator.parameters()
    }


def test_gate_lr_multiplier_applies_to_lambda_only(phantom_root, stage1_ckpt, tmp_path):
    """Adam's first step moves each parameter by its group's lr (see the test above): lambda by 10 x 2e-4."""
    cfg = _config(
        phantom_root,
        stage1_ckpt,
        tmp_path,
        "model.gate_lr_multiplier=10",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
    )
    opt_g, opt_d = build_module(cfg).configure_optimizers()
    groups = _groups(opt_g)
    assert groups["gate"][0] == pytest.approx(10 * 2e-4, rel=1e-12)
    assert groups["refiner"][0] == 2e-4 and [g["lr"] for g in opt_d.param_groups] == [2e-4]
    train(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert abs(ckpt["state_dict"]["refinement.gate"].item()) == pytest.approx(10 * 2e-4, rel=1e-4)
    saved = [(g["name"], g["lr"]) for g in ckpt["optimizer_states"][0]["param_groups"]]
    assert saved == [("refiner", 2e-4), ("gate", pytest.approx(2e-3, rel=1e-12))]


def test_gate_lr_multiplier_must_be_positive(phantom_root, stage1_ckpt, tmp_path):
    for bad in ("0", "-1", "inf"):
        with pytest.raises(ValueError, match="gate_lr_multiplier must be a positive number"):
            build_module(_config(phantom_root, stage1_ckpt, tmp_path, f"model.gate_lr_multiplier={bad}"))


def test_resume_keeps_the_gate_group(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    first = tmp_path / "first"
    one_batch = ["model.gate_lr_multiplier=100", "+trainer.limit_train_batches=1"]
    train(_config(phantom_root, stage1_ckpt, first, "trainer.max_epochs=1", *one_batch))
    saved = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    gate_state = saved["optimizer_states"][0]["state"][saved["optimizer_states"][0]["param_groups"][1]["params"][0]]
    built = capture_modules(monkeypatch)
    at_start = {}

    import lightning as L

    class Spy(L.Callback):
        def on_train_start(self, trainer, module):
            opt_g = trainer.optimizers[0]
            gate = module.refinement.gate
            at_start["groups"] = [(g["name"], g["lr"], len(g["params"])) for g in opt_g.param_groups]
            at_start["gate_state"] = {k: v.clone() for k, v in opt_g.state[gate].items()}
            at_start["gate"] = gate.detach().clone()

    import csmri.app.train as app

    callbacks = app.build_callbacks
    monkeypatch.setattr(app, "build_callbacks", lambda c: [*callbacks(c), Spy()])
    resumed = tmp_path / "resumed"
    train(
        _config(
            phantom_root, stage1_ckpt, resumed, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt",
            *one_batch,
        )
    )  # fmt: skip
    assert len(built) == 1
    n_refiner = len(list(built[0].refinement.refiner.parameters()))
    assert at_start["groups"] == [("refiner", 2e-4, n_refiner), ("gate", pytest.approx(2e-2, rel=1e-12), 1)]
    assert torch.equal(at_start["gate"], saved["state_dict"]["refinement.gate"])
    for key in ("exp_avg", "exp_avg_sq"):  # lambda's Adam state came back with it, into its own group
        assert torch.equal(at_start["gate_state"][key], gate_state[key]), key
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    moved = abs(after["state_dict"]["refinement.gate"].item() - saved["state_dict"]["refinement.gate"].item())
    assert 0 < moved <= 100 * 2e-4 * 1.001  # one more step, bounded by the gate group's lr


def test_checkpoint_with_one_generator_group_resumes_into_two(phantom_root, stage1_ckpt, tmp_path):
    """Optimiser states written while lambda shared V's single group (lambda first, as parameters() lists it)."""
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path, "model.gate_lr_multiplier=10"))
    old = torch.optim.Adam(module.refinement.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for p in module.refinement.parameters():
        p.grad = torch.randn_like(p)
    old.step()
    old_state = old.state_dict()
    old_state["param_groups"][0]["initial_lr"] = 3e-4  # what an LR scheduler records: its decay's starting point
    checkpoint = {"optimizer_states": [old_state, {}]}
    module.on_load_checkpoint(checkpoint)
    opt_g, _ = module.configure_optimizers()
    opt_g.load_state_dict(checkpoint["optimizer_states"][0])
    assert [(g["name"], g["lr"]) for g in opt_g.param_groups] == [("refiner", 2e-4), ("gate", pytest.approx(2e-3))]
    assert [g["initial_lr"] for g in opt_g.param_groups] == [3e-4, pytest.approx(3e-3)]  # the gate's, 10 x V's
    params = list(module.refinement.parameters())
    for index, p in enumerate(params):  # every parameter got its own Adam state back
        torch.testing.assert_close(opt_g.state[p]["exp_avg"], old.state[p]["exp_avg"], rtol=0, atol=0)
        assert old_state["state"][index]["exp_avg"].shape == p.shape


def test_correction_size_on_a_hand_batch(phantom_root, stage1_ckpt, tmp_path):
    """val/correction = sum |x_hat - R| / sum |R| over the epoch's batches: 0 at lambda = 0, and
    |lambda| * mean |s V(R / s)| / mean |R| (s = max |R| per image) computed here from R and V directly."""
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path)).eval()
    batch = simulated_batch(phantom_root, n=3)
    halves = [{k: v[:1] for k, v in batch.items()}, {k: v[1:] for k, v in batch.items()}]  # batches of 1 and 2
    with torch.no_grad():
        for half in halves:
            module.validation_step(half, 1)
        assert module.val_correction.compute().item() == 0.0  # lambda = 0: x_hat is R
        module.val_correction.reset()
        module.refinement.gate.fill_(-0.3)
        for half in halves:
            module.validation_step(half, 1)
        got = module.val_correction.compute().item()
        base = module.base_reconstruction(batch).double()
        s = base.abs().amax(dim=(1, 2, 3), keepdim=True)
        v = module.refinement.refiner((base / s).float()).double()
        want = 0.3 * (s * v).abs().mean() / base.abs().mean()
    assert got == pytest.approx(want.item(), rel=1e-4)
    assert got > 0


def test_relative_correction_accumulates_over_updates():
    """The metric's contract: ``update`` adds a batch, ``compute`` is sum |x_hat - R| / sum |R| over all of them."""
    from csmri.lit.refinement import RelativeCorrection

    metric = RelativeCorrection()
    metric.update(torch.tensor([[1.5, -2.0]]), torch.tensor([[1.0, -1.0]]))  # |diff| 0.5 + 1, |R| 1 + 1
    metric.update(torch.tensor([[4.0]]), torch.tensor([[4.0]]))  # no correction, |R| 4
    assert metric.compute().item() == pytest.approx(1.5 / 6.0)


def test_a_scheduler_steps_both_optimisers_per_epoch_and_keeps_the_gates_ratio(phantom_root, stage1_ckpt, tmp_path):
    """``model.scheduler`` (a ``_partial_`` LR scheduler) is built once for V's optimiser (both groups) and once for
    D's, stepped per epoch; lambda's group keeps its multiple of V's rate as the schedule decays."""
    cfg = _config(
        phantom_root,
        stage1_ckpt,
        tmp_path,
        "model.gate_lr_multiplier=10",
        "model.scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 0.5}",
    )
    (opt_g, opt_d), schedulers = build_module(cfg).configure_optimizers()
    assert [(s["scheduler"].optimizer, s["interval"]) for s in schedulers] == [(opt_g, "epoch"), (opt_d, "epoch")]
    for entry in schedulers:
        entry["scheduler"].step()
    groups = _groups(opt_g)
    assert groups["refiner"][0] == pytest.approx(1e-4) and groups["gate"][0] == pytest.approx(1e-3)
    assert [g["lr"] for g in opt_d.param_groups] == [pytest.approx(1e-4)]


@pytest.mark.parametrize(("d_input", "channels"), [("magnitude", 1), ("complex", 2)])
def test_discriminator_sees_the_configured_input(d_input, channels, phantom_root, stage1_ckpt, tmp_path):
    """``discriminator.input``: D's first convolution takes |x| (1 channel) or real/imaginary (2), and the images
    handed to it are those; ``loss.alpha_target`` reaches the normaliser (0.1 is also its own default)."""
    overrides = [f"model.net.discriminator.input={d_input}", "loss.alpha_target=0.2"]
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path, *overrides))
    first_conv = next(m for m in module.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == channels and module.normalizer.alpha_target == pytest.approx(0.2)
    x = torch.randn(2, 2, 8, 8)
    expected = torch.sqrt(x[:, :1] ** 2 + x[:, 1:] ** 2) if d_input == "magnitude" else x
    assert torch.allclose(module._discriminator_input(x), expected)
    with pytest.raises(ValueError, match=r"discriminator input must be one of \('magnitude', 'complex'\), got 'phase'"):
        build_module(_config(phantom_root, stage1_ckpt, tmp_path, "model.net.discriminator.input=phase"))


def test_checkpoint_records_the_precision_the_vgg_ran_in(phantom_root, stage1_ckpt, tmp_path):
    """The label a checkpoint carries is the one the table's footnote reads, for each precision the VGG can run in."""
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path))
    footnotes = {}
    for bf16 in (True, False):
        module.perceptual.bf16 = bf16
        module.on_save_checkpoint(checkpoint := {})
        footnotes[bf16] = perceptual_precision_label(checkpoint["perceptual_precision"])
    # run_info.json's record, before training: what vgg_precision resolves to on this CPU
    native_bf16 = resolve_feature_precision("auto", "cpu")
    assert module.run_metadata()["perceptual_precision"] == ("bf16" if native_bf16 else "32")
    module.vgg_precision = "32"
    assert module.run_metadata() == {"perceptual_backbone": "vgg19-random", "perceptual_precision": "32"}
    module.perceptual = None  # a GAN stage without a perceptual term
    module.on_save_checkpoint(checkpoint := {})
    assert footnotes == {True: "run in bf16", False: "run in fp32"} and checkpoint["perceptual_precision"] == "none"
    assert module.run_metadata() == {"perceptual_backbone": "none", "perceptual_precision": "none"}


@pytest.mark.slow
def test_training_moves_lambda_and_records_backbone(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    cfg = _config(phantom_root, stage1_ckpt, tmp_path, "trainer.max_epochs=2")
    built = capture_modules(monkeypatch)
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
    # a training sample after every 2nd batch (log_images_every_n_steps=2): batches 2, 4, 6, 8 of 2 epochs x 4; the
    # file is named by global_step, which counts both optimisers' steps (2 per batch) and is read after them
    written = sorted(p.stem for p in (tmp_path / "samples").glob("train_*.png"))
    assert written == [f"train_step{2 * batch:07d}" for batch in (2, 4, 6, 8)]
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in (
        "train/loss_d",
        "train/loss_g",
        "train/adv_norm",
        "train/vgg",
        "train/lambda",
        "train/d_real",
        "train/d_fake",
        "val/psnr",
        "val/psnr_recon",
    ):
        assert name in header
    # the gate's diagnostics, once per validation epoch, finite, and in the run's summary
    per_epoch = _validation_rows(tmp_path / "csv" / "metrics.csv")
    assert [int(row["epoch"]) for row in per_epoch] == [0, 1]
    for row in per_epoch:
        values = {name: float(row[name]) for name in GATE_METRICS}
        assert all(math.isfinite(v) for v in values.values()), values
        assert 0 < values["val/d_real"] < 1 and 0 < values["val/d_fake"] < 1
        assert values["val/correction"] > 0  # lambda != 0 after the first step
    assert float(per_epoch[-1]["val/lambda"]) == pytest.approx(state["refinement.gate"].item(), rel=1e-6)
    for name in GATE_METRICS:
        assert info["final_metrics"][name] == pytest.approx(float(per_epoch[-1][name]), rel=1e-6), name

    reloaded = RefinementModule.load_from_checkpoint(ckpt_path)  # no stage-1 file or arguments needed
    torch.testing.assert_close(reloaded.normalizer.scales, state["normalizer.scales"])
    torch.testing.assert_close(reloaded.replay.images, state["replay.images"])
    assert reloaded.refinement.gate.item() == state["refinement.gate"].item()
    batch = simulated_batch(phantom_root)
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
    built = capture_modules(monkeypatch)
    at_start = {}

    def record_at_train_start(module):  # the state training continues from, after every setup hook
        original = module.on_train_start

        def hook():
            original()
            at_start.update({k: v.detach().clone() for k, v in module.state_dict().items()})

        module.on_train_start = hook

    import csmri.app.train as app

    build = app.build_module
    monkeypatch.setattr(app, "build_module", lambda c, d=None: (m := build(c, d), record_at_train_start(m))[0])
    train(cfg)
    assert "initialise" not in seen and len(built) == 1
    for key in ("replay.images", "replay.count", "normalizer.scales", "normalizer.alpha", "refinement.gate"):
        assert torch.equal(at_start[key], before[key]), key  # bit for bit, not merely "not reset"
    after = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert after["epoch"] == 1
    torch.testing.assert_close(after["state_dict"]["normalizer.scales"], before["normalizer.scales"], rtol=0, atol=0)


def test_recon_ckpt_errors(phantom_root, stage1_ckpt, tmp_path):
    needed = r"^stage 2 needs the stage-1 checkpoint: set model\.net\.recon_ckpt=PATH/checkpoints/best\.ckpt$"
    with pytest.raises(ValueError, match=needed):
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
        "model.net.perceptual.weights=imagenet",
        "model.net.perceptual.allow_random_fallback=false",
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
        "model.net.discriminator.replay.capacity=7",
        "model.net.refine.gate_init=0.3",
    )
    module = build_module(cfg)
    assert module.normalizer.mode == "fixed" and module.normalizer.weights["vgg"] == 5.0
    assert module.normalizer.alpha.item() == 0.5 and not module.normalizer.auto_alpha
    assert module.d_loss.real_target == pytest.approx(0.8) and module.replay.capacity == 7
    assert module.refinement.gate.item() == pytest.approx(0.3)


def test_discriminator_scores_are_per_slice_means_over_an_uneven_epoch(phantom_root, stage1_ckpt, tmp_path):
    """val/d_real and val/d_fake over a validation epoch whose last batch is smaller (6 slices in batches of 4 and 2)
    are the mean over slices of each slice's mean sigmoid(D), not the mean of the two batch means: computed here one
    slice at a time on the target and on R's output (lambda = 0, so x_hat = R)."""
    cfg = _config(phantom_root, stage1_ckpt, tmp_path, "data.eval_batch_size=4")
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    # a D whose score differs from slice to slice (at initialisation it is ~0.5 for every slice): one logit per image
    module.discriminate = lambda x: (20 * x.abs().mean(dim=(1, 2, 3)) - 4, [])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    (logged,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    datamodule.eval_batch_size = 1  # the same slices and fixed masks (keyed by slice), one at a time
    per_slice = {"val/d_real": [], "val/d_fake": []}
    module.eval()
    with torch.no_grad():
        for raw in datamodule.val_dataloader():
            batch = datamodule.on_after_batch_transfer(raw, 0)  # not training: the fixed evaluation masks
            for name, image in [
                ("val/d_real", complex_to_channels(batch["target"])),
                ("val/d_fake", module.base_reconstruction(batch)),
            ]:
                logits, _ = module.discriminate(module._discriminator_input(image))
                per_slice[name].append(torch.sigmoid(logits).mean().item())
    assert [len(v) for v in per_slice.values()] == [6, 6]
    for name, values in per_slice.items():
        assert logged[name] == pytest.approx(sum(values) / len(values), rel=1e-5), name


def test_the_sample_panel_is_the_first_slice_at_each_step_of_the_refinement(phantom_root, stage1_ckpt, tmp_path):
    """The logged sample panel: zero-filled input, R's output, x_hat, x_hat - R and the ground truth, all of the
    batch's first slice (magnitudes computed here from the channels)."""
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path)).eval()
    batch = simulated_batch(phantom_root, n=2)
    with torch.no_grad():
        module.refinement.gate.fill_(0.5)  # x_hat != R
        output, _ = module.generate(batch)
        columns = module.sample_columns(batch, output)
        base = module.base_reconstruction(batch)

    def first_magnitude(channels):
        return channels[0].pow(2).sum(dim=0).sqrt()

    r, x_hat = first_magnitude(base), first_magnitude(output)
    assert not torch.allclose(r, x_hat) and not torch.allclose(output[0], output[1])
    expected = {
        "zero-filled": batch["zero_filled"][0].abs(),
        "R(x_u)": r,
        "x_hat": x_hat,
        "x_hat - R": x_hat - r,
        "ground truth": batch["target"][0].abs(),
    }
    assert list(columns) == list(expected)
    for title, image in expected.items():
        torch.testing.assert_close(columns[title], image, rtol=1e-5, atol=1e-6, msg=title)


def test_train_mode_trains_v_and_d_and_keeps_r_frozen(phantom_root, stage1_ckpt, tmp_path):
    """``module.train()`` (as PyTorch and Lightning call it) puts V and D in training mode and keeps R in eval mode
    (its batch statistics and dropout frozen with its weights); ``train(False)`` / ``eval()`` put everything in eval."""
    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path)).eval()
    module.train()
    assert module.training and module.refinement.training and module.discriminator.training
    assert not module.recon.training and not any(m.training for m in module.recon.modules())
    module.train(False)
    assert not any(m.training for m in module.modules())
