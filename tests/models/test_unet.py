import pytest
import torch

from csmri.models import UNet


def test_paper_refinement_unet_layout():
    net = UNet()
    enc = [m[0] for m in net.down]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in enc] == [
        (2, 32, (4, 4), (2, 2)),
        (32, 64, (4, 4), (2, 2)),
        (64, 128, (4, 4), (2, 2)),
    ]
    assert [m[0].out_channels for m in net.up] == [64, 32]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.down[0])
    assert all(isinstance(m[1], torch.nn.BatchNorm2d) for m in list(net.down[1:]) + list(net.up))
    assert net.down[0][2].negative_slope == 0.1
    w = net.down[1][0].weight.flatten(1)  # orthogonal init: rows orthonormal
    torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "size, features", [((64, 64), (32, 64, 128)), ((32, 48), (8, 16)), ((64, 64), (8, 16, 32, 64))]
)
def test_shapes_and_gradients(size, features):
    net = UNet(in_channels=1, out_channels=3, features=features)
    x = torch.randn(2, 1, *size)
    y = net(x)
    assert y.shape == (2, 3, *size)
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_bad_sizes_and_options():
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet()(torch.randn(1, 2, 36, 36))
    with pytest.raises(ValueError, match="norm"):
        UNet(norm="group")
    with pytest.raises(ValueError, match="init"):
        UNet(init="xavier")
