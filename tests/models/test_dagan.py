import pytest
import torch

from csmri.models.dagan import DAGANGenerator, GlobalDiscriminator, dagan_depth


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
    logits, features = d(y[:, :1])
    assert logits.shape == (2, 1) and len(features) == depth - 2
    assert features[-1].shape[-2:] == (4, 4)


def test_generator_is_residual_with_a_bounded_correction():
    g = DAGANGenerator(64, features=(4, 4, 4, 4, 4, 4))
    x = torch.randn(1, 2, 64, 64) * 5
    assert (g(x) - x).abs().max() <= 1.0  # x_hat = x_u + tanh(U(x_u))


def test_original_dagan_widths_at_256():
    g = DAGANGenerator(256)
    assert [level[0].out_channels for level in g.unet.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert isinstance(g.unet.down[-1][1], torch.nn.Identity)  # no batch norm on the 1 x 1 bottleneck


def test_size_errors():
    with pytest.raises(ValueError, match="power-of-two"):
        DAGANGenerator(96)
    with pytest.raises(ValueError, match="built for 64x64"):
        DAGANGenerator(64, features=(4,) * 6)(torch.randn(1, 2, 32, 32))
