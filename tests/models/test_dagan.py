"""DAGAN's generator and discriminator as its released code (``model.py``, TensorLayer 1.7) builds them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from csmri.errors import CheckpointError
from csmri.models.dagan import DAGANGenerator, GlobalDiscriminator, dagan_depth


def _truncated_std(sigma: float) -> float:
    """Std of N(0, sigma) truncated at +-2 sigma: sigma * sqrt(1 - 2 a phi(a) / (2 Phi(a) - 1)), a = 2."""
    a = 2.0
    phi = math.exp(-(a**2) / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))  # 2 Phi(a) - 1
    return sigma * math.sqrt(1 - 2 * a * phi / mass)


def _psnr(rec: np.ndarray, ref: np.ndarray) -> float:
    """Mean over slices of 10 log10(max(ref)^2 / MSE), magnitudes (B, H, W) (csmri's data range: the target's max)."""
    return float(np.mean([10 * np.log10(t.max() ** 2 / np.mean((r - t) ** 2)) for r, t in zip(rec, ref, strict=True)]))


def _mag(x: torch.Tensor) -> np.ndarray:
    x = x.detach().double().numpy()
    return np.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)


# DAGAN's first level and head (64 filters: what sets the output's scale at initialisation), narrower deep levels
SMALL = (64, 64, 128, 128, 128, 128)


@pytest.mark.parametrize("size, depth", [(64, 6), (128, 7), (256, 8)])
def test_generator_and_discriminator_shapes(size, depth):
    assert dagan_depth(size) == depth
    small = (8, 8, 16, 16, 16, 16, 16, 16)
    g = DAGANGenerator(size, features=small)
    assert len(g.unet.down) == depth  # one stride-2 level per halving down to 1 x 1
    x = torch.randn(2, 2, size, size)
    y = g(x)
    assert y.shape == x.shape
    d = GlobalDiscriminator(1, size, base=4, max_features=16)
    logits, features = d(y.norm(dim=1, keepdim=True))
    assert logits.shape == (2, 1) and len(features) == depth - 2 + 1  # strided levels, then the tail
    assert all(f.shape[-2:] == (4, 4) for f in features[-2:])


def test_original_dagan_layout_at_256():
    """Widths from DAGAN's model.py (u_net_bn): conv1..conv8 64, 128, 256, 512 x 5; deconv7..deconv1 512, 1024, 1024,
    1024, 256, 128, 64; deconv0 64 -> BN -> ReLU -> 1x1 'out' conv to 1 channel -> tanh."""
    with torch.device("meta"):  # shapes only
        g = DAGANGenerator(256)
    unet = g.unet
    assert [level[0].out_channels for level in unet.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert isinstance(unet.down[0][1], nn.Identity) and isinstance(unet.down[-1][1], nn.Identity)  # no BN there
    assert [up[0].out_channels for up in unet.up] == [512, 1024, 1024, 1024, 256, 128, 64]
    assert [up[0].in_channels for up in unet.up] == [512, 1024, 1536, 1536, 1536, 512, 256]  # after the concats
    assert all(isinstance(up[2], nn.ReLU) for up in unet.up)  # the decoder uses ReLU, the encoder LeakyReLU 0.2
    assert unet.down[1][2].negative_slope == 0.2
    deconv, bn, relu = unet.head
    assert isinstance(deconv, nn.ConvTranspose2d) and (deconv.in_channels, deconv.out_channels) == (128, 64)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert unet.out.kernel_size == (1, 1) and (unet.out.in_channels, unet.out.out_channels) == (64, 1)
    assert unet.down[0][0].in_channels == 1  # DAGAN's input: one magnitude channel


def test_initialisation_is_dagans():
    """w_init truncated normal 0.01 (within 2 sigma), the 1x1 'out' conv TensorLayer's default truncated normal 0.02,
    zero biases, gamma_init N(1, 0.02), beta 0."""
    torch.manual_seed(0)
    g = DAGANGenerator(64, features=SMALL)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m is not g.unet.out]
    w = torch.cat([m.weight.flatten() for m in convs]).double()
    assert w.abs().max() <= 0.02 + 1e-9
    assert w.mean().abs() < 1e-4
    assert w.std().item() == pytest.approx(_truncated_std(0.01), rel=0.01)
    out = g.unet.out.weight.flatten().double()
    assert out.abs().max() <= 0.04 + 1e-9 and out.abs().max() > 0.02  # sigma 0.02, not 0.01
    assert out.std().item() == pytest.approx(_truncated_std(0.02), rel=0.3)  # 64 weights only
    biases = [m.bias for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.bias is not None]
    assert biases and all((b == 0).all() for b in biases)
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    gamma = torch.cat([m.weight.detach().flatten() for m in bns]).double()
    assert gamma.numel() > 1000
    assert gamma.mean().item() == pytest.approx(1.0, abs=0.002)
    assert gamma.std().item() == pytest.approx(0.02, rel=0.1)
    assert all((m.bias == 0).all() for m in bns)
    d = GlobalDiscriminator(1, 64)
    d_gamma = torch.cat([m.weight.detach().flatten() for m in d.modules() if isinstance(m, nn.BatchNorm2d)]).double()
    assert d_gamma.mean().item() == pytest.approx(1.0, abs=0.005) and d_gamma.std().item() == pytest.approx(
        0.02, rel=0.2
    )


def test_train_mode_generator_starts_within_1db_of_zero_filled(phantom_root):
    """In training mode (batch statistics, as DAGAN trains) the untrained generator returns nearly the zero-filled
    image: PSNR within 1 dB of zero-filled on a batch of 64^2 phantom slices undersampled with training masks."""
    from tests.helpers import compose_config

    cfg = compose_config("train", ["experiment=dagan", f"data.root={phantom_root}", "data.batch_size=8"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    zf = torch.view_as_real(batch["zero_filled"]).movedim(-1, 1).float().contiguous()
    target = batch["target"].abs().double().numpy()
    psnr_zf = _psnr(_mag(zf), target)
    for seed in range(2):
        torch.manual_seed(seed)
        g = DAGANGenerator(64, features=SMALL).train()
        seen = []
        hook = g.unet.out.register_forward_hook(lambda module, args, output, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            out = g(zf)
        hook.remove()
        head = seen[0]  # the 1x1 output conv reads deconv -> BN (batch statistics) -> ReLU
        assert head.shape[1] == 64 and head.min() >= 0
        assert 0.4 < (head == 0).float().mean() < 0.6  # ReLU of batch-normalised maps: about half are zero
        psnr_g = _psnr(_mag(out), target)
        assert abs(psnr_g - psnr_zf) < 1.0, (seed, psnr_g, psnr_zf)
        assert not torch.allclose(out, zf)  # a real residual, not the identity


def test_output_is_the_clipped_residual_in_dagans_range():
    """x_hat has magnitude (clip(u + tanh(G(u)), -1, 1) + 1) / 2 with u = 2|x_u| - 1 and the phase of x_u: always
    within DAGAN's [-1, 1] (|x_hat| <= 1), in training and evaluation mode, also for inputs far outside it."""
    torch.manual_seed(0)
    g = DAGANGenerator(64, features=(8, 16, 16, 16, 16, 16))
    x = torch.randn(3, 2, 64, 64) * torch.linspace(0, 3, 64).view(1, 1, 1, 64)  # |x| from 0 to ~6
    x[:, :, :4, :4] = 0.0
    for train in (True, False):
        g.train(train)
        with torch.no_grad():
            out = g(x)
            u = 2 * x.norm(dim=1, keepdim=True) - 1
            g.train(train)
            t = torch.tanh(g.unet(u))
        m = out.norm(dim=1, keepdim=True)
        assert m.max() <= 1 + 1e-6 and (2 * m - 1).min() >= -1 - 1e-6
        assert out.abs().max() <= 1 + 1e-6  # each channel within [-1, 1] too
        expected = ((u + t).clamp(-1, 1) + 1) / 2
        torch.testing.assert_close(m, expected, atol=1e-5, rtol=0)
        big = (x.norm(dim=1, keepdim=True) > 1.5).expand_as(out)  # u + tanh > 2 - 1: clipped to exactly 1
        assert torch.allclose(m.expand_as(out)[big], torch.ones(()), atol=1e-6)
        phase_in, phase_out = torch.atan2(x[:, 1], x[:, 0]), torch.atan2(out[:, 1], out[:, 0])
        keep = (x.norm(dim=1) > 1e-3) & (out.norm(dim=1) > 1e-3)
        torch.testing.assert_close(torch.cos(phase_out - phase_in)[keep], torch.ones(()).expand(int(keep.sum())))
        zero = out[:, :, :4, :4]  # x_u = 0: phase 0, magnitude (clip(-1 + tanh) + 1) / 2 >= 0 on the real axis
        assert (zero[:, 1] == 0).all() and (zero[:, 0] >= 0).all()


def test_discriminator_has_dagans_tail_and_input_range():
    d = GlobalDiscriminator(1, 64, base=64)
    assert len(d.layers) == 4  # 64 -> 4 x 4 in four stride-2 levels: 64, 128, 256, 512
    h6, h7, res = d.tail["h6"], d.tail["h7"], d.tail["res"]
    assert (h6[0].kernel_size, h6[0].out_channels) == ((1, 1), 1024)  # 16 df_dim
    assert (h7[0].kernel_size, h7[0].out_channels) == ((1, 1), 512) and len(h7) == 2  # 8 df_dim, BN, no activation
    assert [(c[0].kernel_size, c[0].out_channels) for c in res] == [((1, 1), 128), ((3, 3), 128), ((3, 3), 512)]
    assert d.classifier.in_features == 512 * 16
    torch.manual_seed(0)
    m = torch.rand(4, 1, 64, 64)
    d.eval()
    plain = GlobalDiscriminator(1, 64, base=64, dagan_range=False).eval()
    plain.load_state_dict(d.state_dict())
    torch.testing.assert_close(d(m)[0], plain(2 * m - 1)[0])  # magnitudes in [0, 1] -> DAGAN's 2 m - 1
    h = 2 * m - 1  # DAGAN's h8 = lrelu(h7 + res(h7), 0.2), then the dense layer (model.py, discriminator)
    for layer in d.layers:
        h = layer(h)
    h7 = h7(h6(h))
    h8 = torch.where(h7 + res(h7) > 0, h7 + res(h7), 0.2 * (h7 + res(h7)))
    logits, features = d(m)
    torch.testing.assert_close(logits, d.classifier(h8.flatten(1)))
    torch.testing.assert_close(features[-1], h8)


def test_earlier_generator_checkpoints_are_refused_clearly():
    g = DAGANGenerator(64, features=(8, 16, 16, 16, 16, 16))
    state = {k: v for k, v in g.state_dict().items() if not k.startswith("unet.out.")}
    state["unet.head.weight"] = torch.zeros(32, 2, 4, 4)  # the earlier bare ConvTranspose2d head
    with pytest.raises(CheckpointError, match="earlier csmri generator"):
        g.load_state_dict(state)
    g.load_state_dict(g.state_dict())  # the current layout loads


def test_size_errors():
    with pytest.raises(ValueError, match="power-of-two"):
        DAGANGenerator(96)
    with pytest.raises(ValueError, match="built for 64x64"):
        DAGANGenerator(64, features=(4,) * 6)(torch.randn(1, 2, 32, 32))
