import pytest
import torch

from csmri.models import RecNet
from csmri.physics import complex_to_channels, fft2c, gaussian_line_mask, undersample, zero_filled


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 32, 32, dtype=torch.complex64, generator=g)
    mask = gaussian_line_mask(2, (32, 32), 4, generator=g)
    kspace = undersample(target, mask)
    return complex_to_channels(zero_filled(kspace)), kspace, mask


def test_architecture_defaults():
    net = RecNet()
    assert len(net.blocks) == 3
    convs = [m for m in net.blocks[0] if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (2, 32, (3, 3)),
        (32, 32, (3, 3)),
        (32, 2, (3, 3)),
    ]
    acts = [m for m in net.blocks[0] if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 2 and acts[0].negative_slope == 0.01
    assert net.residual


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("nc, nd, nf", [(1, 2, 4), (3, 3, 8), (5, 5, 16)])
def test_output_is_data_consistent(inputs, residual, nc, nd, nf):
    x, kspace, mask = inputs
    out = RecNet(nc=nc, nd=nd, nf=nf, residual=residual)(x, kspace, mask)
    assert out.shape == x.shape
    k_out = fft2c(torch.complex(out[:, 0], out[:, 1]))
    torch.testing.assert_close(k_out[mask == 1], kspace[mask == 1], atol=1e-5, rtol=1e-4)


def test_filter_count_and_backward(inputs):
    x, kspace, mask = inputs
    net = RecNet(nf=16)
    assert net.blocks[0][0].out_channels == 16
    net(x, kspace, mask).pow(2).mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_config():
    with pytest.raises(ValueError, match="activation"):
        RecNet(activation="gelu")
    with pytest.raises(ValueError, match="nd"):
        RecNet(nd=1)
