"""The shipped defaults of stage 2 and of the DAGAN baseline, read from the composed configs and from the modules and
optimisers they instantiate (a test that read only the YAML would miss a code path that ignores a key).

Expected numbers come from the method's sources, not from the YAML:

- stage 2: /work/shared/DESIGN.md section 2 and the paper (Seitzer et al. 2018, section 2 and 3): "D training.
  One-sided label smoothing 0.1 (real target 0.9); experience replay buffer of 80 images, p = 0.5 of drawing from it;
  Adam 2e-4, beta = (0.5, 0.999) for both nets; batch 5; 200 epochs"; "L(V) = 1/2 (L_adv/M + L_feat/N) + L_VGG/O +
  alpha L_pen" with M, N, O fixed at the first iteration; "choose alpha so L_pen ~ 0.1 at the first iteration";
  "L_pen = mean |x_V|"; "lambda is a trainable scalar, initialised 0".
- DAGAN: DESIGN.md section 2 after Yang et al. (2018) and its released code: "generator loss = adv + 15 NMSE +
  0.1 freq + 0.0025 VGG" (fixed weights, no normalisation), "Adam 1e-4, beta1 0.5, LR halved every 5 epochs,
  batch 25, early stopping on validation NMSE".
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from csmri.app.train import build_module
from tests.helpers import ADVERSARIAL, TINY_STAGE2, compose_config

STAGE2_LR, STAGE2_BETAS = 2e-4, (0.5, 0.999)  # paper: "Adam ... learning rate 2e-4, beta1 = 0.5" for V and D
DAGAN_LR, DAGAN_BETA1 = 1e-4, 0.5  # DAGAN: Adam 1e-4, beta1 0.5
DAGAN_WEIGHTS = {"adv": 1.0, "nmse": 15.0, "freq": 0.1, "vgg": 0.0025}  # DAGAN's released generator loss


def _stage2(phantom_root, stage1_ckpt, *extra):
    return compose_config(
        "train", ["experiment=stage2", f"data.root={phantom_root}", f"model.net.recon_ckpt={stage1_ckpt}", *extra]
    )


def _dagan(phantom_root, *extra):
    return compose_config("train", ["experiment=dagan", f"data.root={phantom_root}", *extra])


def _adam_settings(optimizer):
    """(lr, betas, weight decay) shared by every parameter group of an Adam optimiser."""
    assert isinstance(optimizer, torch.optim.Adam), type(optimizer)
    settings = {(group["lr"], tuple(group["betas"]), group["weight_decay"]) for group in optimizer.param_groups}
    assert len(settings) == 1, settings
    return settings.pop()


def _ids(params):
    return {id(p) for p in params}


def test_stage2_composed_config_is_the_papers(phantom_root, stage1_ckpt):
    cfg = _stage2(phantom_root, stage1_ckpt)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    assert loss["label_smoothing"] == pytest.approx(0.1)
    assert OmegaConf.to_container(cfg.model.net.discriminator.replay) == {"capacity": 80, "p": 0.5}
    assert loss["normalizer"] == "first_step"
    # 1/2 (L_adv/M + L_feat/N) + L_VGG/O: weights 1/2, 1/2, 1 on the normalised terms
    assert loss["weights"] == {"adv": 0.5, "feat": 0.5, "vgg": 1.0}
    assert loss["alpha"] == "auto" and loss["alpha_target"] == pytest.approx(0.1)
    opt = cfg.model.optimizer
    assert opt._target_ == "torch.optim.Adam" and opt.lr == pytest.approx(STAGE2_LR)
    assert tuple(opt.betas) == STAGE2_BETAS and opt.weight_decay == 0
    assert cfg.model.get("scheduler") is None  # constant learning rate
    assert cfg.model.net.refine.gate_init == 0.0
    assert cfg.model.net.discriminator.input == "magnitude"  # D sees magnitude images
    assert cfg.data.batch_size == 5 and cfg.trainer.max_epochs == 200
    # the paper's section 3: V "64, 32 decoding filters of size 4x4, batch normalization and leaky ReLU", initialised
    # orthogonally; D "64, 128, 256, 512, 1024, 1024 filters of size 4x4, channelwise dropout after the last 3 layers";
    # "the VGG loss used the final convolutional feature maps"
    v = cfg.model.net.refine.net
    assert (list(v.features), v.kernel_size, v.norm, v.init) == ([32, 64, 128], 4, "batch", "orthogonal")
    assert v.negative_slope == 0.1
    d = cfg.model.net.discriminator.net
    assert list(d.features) == [64, 128, 256, 512, 1024, 1024] and (d.dropout, d.dropout_layers) == (0.5, 3)
    assert cfg.model.net.perceptual.layer == "relu5_4"


def test_stage2_module_and_optimisers_carry_the_defaults(phantom_root, stage1_ckpt):
    module = build_module(_stage2(phantom_root, stage1_ckpt, *TINY_STAGE2))
    assert module.d_loss.real_target == pytest.approx(0.9)  # one-sided smoothing 0.1
    assert module.replay.capacity == 80 and module.replay.p == 0.5
    norm = module.normalizer
    assert norm.mode == "first_step" and norm.weights == {"adv": 0.5, "feat": 0.5, "vgg": 1.0}
    assert norm.auto_alpha and norm.alpha_target == pytest.approx(0.1) and not bool(norm.initialised)
    assert module.refinement.gate.item() == 0.0 and module.refinement.gate.requires_grad

    # L_pen = mean |x_V| (V's output before the gate), here on a tensor whose mean |.| is known: 1.5
    x_v = torch.tensor([[[[1.0, -2.0], [-1.0, 2.0]]]])
    assert module.extra_terms({}, None, {"x_v": x_v}, None)["pen"].item() == pytest.approx(1.5)

    # V orthogonally initialised (each convolution's flattened weight has orthonormal rows or columns), D from
    # N(0, 0.02) (the paper, section 3)
    convs = [
        m for m in module.refinement.refiner.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    assert convs
    for conv in convs:
        w = conv.weight.detach().flatten(1).double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, torch.eye(len(gram), dtype=torch.float64), atol=1e-5, rtol=0)
    d_weights = torch.cat(
        [m.weight.detach().flatten() for m in module.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    )
    assert abs(d_weights.mean().item()) < 1e-3 and d_weights.std().item() == pytest.approx(0.02, rel=0.05)

    optimisers = module.configure_optimizers()
    assert isinstance(optimisers, list) and len(optimisers) == 2  # no LR scheduler
    opt_v, opt_d = optimisers
    for opt in (opt_v, opt_d):
        assert _adam_settings(opt) == (pytest.approx(STAGE2_LR), STAGE2_BETAS, 0.0)
    v_params = _ids(p for group in opt_v.param_groups for p in group["params"])
    assert id(module.refinement.gate) in v_params  # lambda is trained with V, at V's settings (multiplier 1)
    assert module.hparams.gate_lr_multiplier == 1.0
    assert v_params == _ids(module.refinement.parameters())  # V and lambda, nothing of R or D
    assert _ids(p for group in opt_d.param_groups for p in group["params"]) == _ids(module.discriminator.parameters())


def test_stage1_and_the_acquisition_are_the_papers(phantom_root):
    """The paper, section 3: "1D-Gaussian masks keeping 12.5% of raw k-space data (8x)"; RecNet "nc = 3 de-aliasing
    blocks, and nd = 3 convolutional layers with 32 filters of size 3x3", trained (with MSE, section 2) "for 1500 epochs
    with batch size 20 ... Adam ... learning rate 0.0002, beta1 = 0.5" (stage 2's Adam); DESIGN.md section 2: LeakyReLU
    0.01 and DC-CNN's per-block residual."""
    from hydra.utils import instantiate

    from csmri.physics.mask import GaussianLineMask

    cfg = compose_config("train", ["experiment=stage1", f"data.root={phantom_root}"])
    assert cfg.data.batch_size == 20 and cfg.trainer.max_epochs == 1500
    sampler = instantiate(cfg.data).sampler
    assert isinstance(sampler.mask_func, GaussianLineMask) and sampler.acceleration == 8
    module = build_module(cfg)
    assert type(module.loss_fn) is torch.nn.MSELoss
    net = module.net
    assert len(net.blocks) == 3 and net.residual
    for block in net.blocks:
        convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
            (2, 32, (3, 3)),
            (32, 32, (3, 3)),
            (32, 2, (3, 3)),
        ]
        slopes = {m.negative_slope for m in block.modules() if isinstance(m, torch.nn.LeakyReLU)}
        assert slopes == {0.01}
    assert _adam_settings(module.configure_optimizers()) == (pytest.approx(STAGE2_LR), STAGE2_BETAS, 0.0)


def test_dagan_composed_config_is_dagans(phantom_root):
    cfg = _dagan(phantom_root)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    assert loss["normalizer"] == "fixed"  # raw terms at DAGAN's scales: no first-step normalisation
    assert {k: v for k, v in loss["weights"].items() if v} == DAGAN_WEIGHTS
    assert loss["alpha"] is None  # no refinement penalty
    opt = cfg.model.optimizer
    assert opt._target_ == "torch.optim.Adam" and opt.lr == pytest.approx(DAGAN_LR) and opt.betas[0] == DAGAN_BETA1
    sched = cfg.model.scheduler
    assert sched._target_ == "torch.optim.lr_scheduler.StepLR" and sched.step_size == 5 and sched.gamma == 0.5
    assert cfg.data.batch_size == 25
    assert cfg.monitor.metric == "val/nmse" and cfg.monitor.mode == "min"
    assert cfg.callbacks.early_stopping.monitor == "val/nmse"


def test_dagan_module_and_optimisers_carry_its_protocol(phantom_root, tmp_path):
    module = build_module(_dagan(phantom_root, *ADVERSARIAL["dagan"]))
    norm = module.normalizer
    assert norm.mode == "fixed" and norm.weights == DAGAN_WEIGHTS and not norm.has_penalty
    assert bool(norm.initialised)  # fixed weights: nothing is measured at the first step
    torch.testing.assert_close(norm.scales, torch.ones(len(DAGAN_WEIGHTS)))

    optimisers, schedulers = module.configure_optimizers()
    assert len(optimisers) == 2 and len(schedulers) == 2
    generator_params = _ids(p for group in optimisers[0].param_groups for p in group["params"])
    assert generator_params == _ids(module.generator.parameters())
    for opt, entry in zip(optimisers, schedulers, strict=True):
        lr, betas, _ = _adam_settings(opt)
        assert lr == pytest.approx(DAGAN_LR) and betas[0] == DAGAN_BETA1
        assert entry["interval"] == "epoch" and entry["scheduler"].optimizer is opt
        for _ in range(5):  # five epochs: the LR halves once (1e-4 -> 5e-5), and again after ten
            entry["scheduler"].step()
        assert opt.param_groups[0]["lr"] == pytest.approx(DAGAN_LR / 2)
        for _ in range(5):
            entry["scheduler"].step()
        assert opt.param_groups[0]["lr"] == pytest.approx(DAGAN_LR / 4)
