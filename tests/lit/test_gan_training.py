"""Stage 2's discriminator inputs inside real training steps: replayed images reach D at the rate p, and feature
matching compares every one of D's feature maps."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from csmri.app.train import build_module, train
from csmri.physics import complex_to_channels
from tests.helpers import TINY_STAGE2, capture_modules, compose_config, simulated_batch, tiny_dagan_overrides

P_REPLAY = 0.5  # DESIGN.md section 2 / the paper: "p = 0.5 of drawing from" the replay buffer


def _config(phantom_root, stage1_ckpt, out, *extra):
    overrides = [
        "experiment=stage2",
        f"data.root={phantom_root}",
        f"model.net.recon_ckpt={stage1_ckpt}",
        *TINY_STAGE2,
        "logger=csv",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=false",
        "model.log_images_every_n_steps=0",
        *extra,
    ]
    return compose_config("train", overrides, out)


def test_replayed_images_reach_the_discriminator_at_rate_p(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    """Every D step's fake batch, recorded at D's input, holds either this step's refined image or (swapped) an
    earlier one, bit for bit; once the buffer is full the swaps happen at the shipped rate p."""
    capacity, batch, epochs = 4, 12, 10  # the 12 training slices in one batch: 10 steps, 116 draws once full
    generated: list[torch.Tensor] = []  # per step: the refined magnitudes (B, 1, H, W) that entered the buffer
    d_inputs: list[list[torch.Tensor]] = []  # per step: every input D saw, in call order

    def spy_on(module):
        generate, training_step, d_forward = module.generate, module.training_step, module.discriminator.forward

        def spy_generate(b):
            output, extras = generate(b)
            if module.training:
                generated.append(module._discriminator_input(output.float()).detach().clone())
            return output, extras

        def spy_training_step(*args, **kwargs):
            d_inputs.append([])
            return training_step(*args, **kwargs)

        def spy_d(x):
            if module.training and d_inputs:
                d_inputs[-1].append(x.detach().clone())
            return d_forward(x)

        module.generate, module.training_step, module.discriminator.forward = spy_generate, spy_training_step, spy_d

    capture_modules(monkeypatch, spy_on)
    overrides = [
        f"model.net.discriminator.replay.capacity={capacity}",  # p stays the shipped one
        "loss.weights.vgg=0",  # no VGG term (speed): D's inputs do not depend on it
        f"data.batch_size={batch}",
        f"trainer.max_epochs={epochs}",
        "+trainer.limit_val_batches=0",
    ]
    train(_config(phantom_root, stage1_ckpt, tmp_path, *overrides))
    assert len(generated) == len(d_inputs) == epochs

    earlier: list[torch.Tensor] = []  # every refined image produced so far, in order
    draws = swapped = 0
    for step, (fakes, calls) in enumerate(zip(generated, d_inputs, strict=True)):
        # the D step: D(real), D(fake for D); then the V step: D(x_hat), D(real) for feature matching
        assert len(calls) == 4, len(calls)
        seen = calls[1]
        assert seen.shape == fakes.shape
        for i in range(fakes.shape[0]):
            full = len(earlier) >= capacity  # the buffer was full when this image arrived
            if torch.equal(seen[i], fakes[i]):
                pass  # this step's own image
            else:
                assert full, f"step {step}, image {i}: swapped while the buffer was still filling"
                # a refined image of an earlier step (or earlier in this batch) that the buffer held
                assert any(torch.equal(seen[i], old) for old in earlier), f"step {step}, image {i}: not a stored one"
                swapped += 1
            draws += full
            earlier.append(fakes[i])
    assert swapped > 0, "no replayed image ever reached D"
    # each draw swaps with probability p, independently: swapped ~ Binomial(draws, p); a 4-sigma band
    sigma = math.sqrt(P_REPLAY * (1 - P_REPLAY) / draws)
    assert abs(swapped / draws - P_REPLAY) < 4 * sigma, (swapped, draws)


def _magnitude(channels: torch.Tensor) -> torch.Tensor:
    """``|x|`` of 2-channel images ``(B, 2, H, W)`` as D's 1-channel input ``(B, 1, H, W)``, written out here."""
    return torch.sqrt(channels[:, 0] ** 2 + channels[:, 1] ** 2).unsqueeze(1)


def _d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The paper's D loss written out: BCE(D(real), 1 - 0.1) + BCE(D(fake), 0) (one-sided label smoothing 0.1)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
    return real + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


class ThreeMapDiscriminator(nn.Module):
    """A parameter-free D with three feature maps of different sizes and scales (input ``(B, 1, H, W)``)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        f1 = 2.0 * x
        f2 = F.avg_pool2d(x, 2) ** 2
        f3 = 5.0 * F.avg_pool2d(x, 4) - 1.0
        return f3.mean(dim=(1, 2, 3)), [f1, f2, f3]


def test_feature_matching_averages_every_discriminator_map(phantom_root, stage1_ckpt, tmp_path):

    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path))
    module.discriminator = ThreeMapDiscriminator()
    batch = simulated_batch(phantom_root)
    target = complex_to_channels(batch["target"])
    output = complex_to_channels(batch["zero_filled"])  # a reconstruction that differs from the target
    terms, _ = module.generator_terms(batch, output, {"x_v": output}, target)

    _, real_maps = ThreeMapDiscriminator()(_magnitude(target))
    _, fake_maps = ThreeMapDiscriminator()(_magnitude(output))
    per_map = [(real - fake).abs().mean() for real, fake in zip(real_maps, fake_maps, strict=True)]
    expected = sum(per_map) / 3
    assert terms["feat"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the maps differ enough that any single map (or a subset) gives another value
    assert min(abs(expected.item() - m.item()) for m in per_map) > 1e-3 * expected.item()


@pytest.mark.slow
def test_one_training_step_by_hand(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    """Stage 2's first step against the paper's losses written out here: D's loss is BCE(D(|x|), 1 - 0.1) +
    BCE(D(|x_hat|), 0) with D before its step, and V's adversarial term is the non-saturating BCE(D'(|x_hat|), 1)
    with D' the discriminator after its step (at step 1 lambda = 0, so x_hat = R(x_u), and the empty replay buffer
    passes this step's image through)."""
    seen = {}

    def spy_on(module):
        training_step = module.training_step

        def spy(batch, batch_idx):
            seen["d_before"] = copy.deepcopy(module.discriminator)
            seen["batch"] = batch
            seen["logs"] = training_step(batch, batch_idx)
            seen["d_after"] = copy.deepcopy(module.discriminator)
            seen["base"] = module.base_reconstruction(batch).detach()
            return seen["logs"]

        module.training_step = spy

    capture_modules(monkeypatch, spy_on)
    overrides = [
        "loss.weights.vgg=0",
        "model.net.discriminator.net.dropout=0",  # D deterministic: the hand computation sees the same network
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=0",
    ]
    train(_config(phantom_root, stage1_ckpt, tmp_path, *overrides))

    real, fake = _magnitude(complex_to_channels(seen["batch"]["target"])), _magnitude(seen["base"])
    d0, d1 = seen["d_before"].train(), seen["d_after"].train()  # batch statistics, as in training
    with torch.no_grad():
        real0, fake0, fake1 = d0(real)[0], d0(fake)[0], d1(fake)[0]
    loss_d = _d_loss(real0, fake0)
    adv = F.binary_cross_entropy_with_logits(fake1, torch.ones_like(fake1))
    logs = seen["logs"]
    assert logs["train/loss_d"].item() == pytest.approx(loss_d.item(), rel=1e-4)
    assert logs["train/d_real"].item() == pytest.approx(torch.sigmoid(real0).mean().item(), rel=1e-4)
    assert logs["train/adv"].item() == pytest.approx(adv.item(), rel=1e-4)
    assert logs["train/d_fake"].item() == pytest.approx(torch.sigmoid(fake1).mean().item(), rel=1e-4)  # V's step's D
    # D's step went down its loss's gradient: the stepped D separates the same images better
    with torch.no_grad():
        real1 = d1(real)[0]
    loss_d1 = _d_loss(real1, fake1)
    assert loss_d1.item() < loss_d.item()


@pytest.mark.slow
def test_a_dagan_training_step_moves_the_generator_and_the_discriminator(phantom_root, tmp_path, monkeypatch):
    """The GAN base's own optimisers (DAGAN's; joint's are the same): one step moves every trainable tensor of G and
    of D."""
    before = {}

    def snapshot(module):
        before.update({k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad})

    built = capture_modules(monkeypatch, snapshot)
    overrides = tiny_dagan_overrides(
        phantom_root,
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",  # DAGAN's early stopping reads val/nmse
    )
    train(compose_config("train", overrides, tmp_path))
    after = dict(built[0].named_parameters())
    for network in ("discriminator.", "generator."):
        names = [k for k in before if k.startswith(network)]
        assert names, network
        still = [k for k in names if torch.equal(before[k], after[k].detach())]
        assert not still, f"{network} tensors a step did not move: {still[:3]}"


def test_every_generator_term_reaches_the_trained_weights(phantom_root, stage1_ckpt, tmp_path):
    """Each of V's loss terms (adversarial, feature matching, perceptual, penalty) has a gradient on the weights V's
    optimiser trains (lambda at the first step, where x_hat = R + 0 * V: only lambda sees the image terms)."""

    module = build_module(_config(phantom_root, stage1_ckpt, tmp_path))
    batch = simulated_batch(phantom_root)
    output, extras = module.generate(batch)
    terms, _ = module.generator_terms(batch, output.float(), extras, complex_to_channels(batch["target"]))
    assert set(terms) == {"adv", "feat", "vgg", "pen"}
    trained = [p for p in module.generator_parameters() if p.requires_grad]
    for name, term in terms.items():
        grads = torch.autograd.grad(term, trained, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{name} does not reach V's weights"


@pytest.mark.slow
def test_grad_clip_clips_both_networks_by_norm(phantom_root, stage1_ckpt, tmp_path, monkeypatch):
    calls = []

    def spy_on(module):
        clip = module.clip_gradients

        def spy(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            calls.append((optimizer.param_groups[0].get("name", "D"), gradient_clip_val, gradient_clip_algorithm))
            return clip(optimizer, gradient_clip_val, gradient_clip_algorithm)

        module.clip_gradients = spy

    capture_modules(monkeypatch, spy_on)
    overrides = ["loss.weights.vgg=0", "model.grad_clip=0.5", "trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
    train(_config(phantom_root, stage1_ckpt, tmp_path, *overrides, "+trainer.limit_val_batches=0"))
    assert calls == [("D", 0.5, "norm"), ("refiner", 0.5, "norm")] * 2  # per step: D's step, then V's


def test_dagans_lr_schedule_steps_once_per_epoch_in_training(phantom_root, tmp_path):
    """Manual optimisation: Lightning steps no scheduler itself, the GAN base does at each epoch's end. DAGAN's
    schedule (StepLR, halved every 5 epochs), here with step_size 1: after 2 epochs of 2 batches, G's and D's lr are
    its 1e-4 / 4 (per batch it would be / 16, never stepped 1e-4)."""
    overrides = tiny_dagan_overrides(
        phantom_root,
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "model.scheduler.step_size=1",
    )
    train(compose_config("train", overrides, tmp_path))
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    lrs = [group["lr"] for state in saved["optimizer_states"] for group in state["param_groups"]]
    assert lrs == [pytest.approx(1e-4 / 4)] * 2
