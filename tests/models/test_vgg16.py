"""VGGFeatures with arch=vgg16 (DAGAN's VGG term): layer names, offline weight rules, vgg19 unchanged."""

from __future__ import annotations

import pytest
import torch

from csmri.errors import PerceptualWeightsUnavailable
from csmri.models import VGGFeatures
from csmri.models.vgg import VGG16_LAYERS, imagenet_weights_file


def test_vgg16_layer_names_index_torchvision_features():
    from torchvision.models import vgg16

    features = vgg16(weights=None).features
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    for name, index in VGG16_LAYERS.items():
        assert isinstance(features[index], kinds[name[:4].rstrip("0123456789_")]), name
    # pool4 follows conv4_3 and its ReLU: 3 convs after pool3, 512 channels
    assert [type(m).__name__ for m in features[17:24]] == ["Conv2d", "ReLU"] * 3 + ["MaxPool2d"]
    vgg = VGGFeatures("random", layer="pool4", arch="vgg16")
    assert vgg.backbone == "vgg16-random" and len(vgg.features) == 24
    assert vgg(torch.rand(1, 32, 32)).shape == (1, 512, 2, 2)
    with pytest.raises(ValueError, match="unknown vgg16 layer .*relu4_3"):
        VGGFeatures("random", layer="relu3_4", arch="vgg16")  # a vgg19 name
    with pytest.raises(ValueError, match="unknown VGG arch"):
        VGGFeatures("random", arch="vgg11")


def test_vgg16_imagenet_offline_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_weights_file("vgg16") == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(PerceptualWeightsUnavailable, match="vgg16-397923af.pth") as err:
        VGGFeatures("imagenet", layer="pool4", arch="vgg16")
    assert str(tmp_path) in str(err.value) and "allow_random_fallback" in str(err.value)
    stand_in = VGGFeatures("imagenet", layer="relu1_2", allow_random_fallback=True, arch="vgg16")
    assert stand_in.backbone == "vgg16-random"
    # vgg19 stays the default and keeps its file name
    assert imagenet_weights_file().name == "vgg19-dcbb9e9d.pth"
    assert VGGFeatures("random", layer="relu1_2").backbone == "vgg19-random"


@pytest.mark.slow
def test_vgg16_from_dagans_caffe_npz(tmp_path):
    """DAGAN's ``vgg16_weights.npz`` layout: ``convB_I_W`` as (3, 3, in, out), ``convB_I_b``."""
    import numpy as np
    from torchvision.models import vgg16

    reference = vgg16(weights=None).features
    convs = [m for m in reference if isinstance(m, torch.nn.Conv2d)]
    names = [f"conv{b}_{i}" for b, n in enumerate([2, 2, 3, 3, 3], start=1) for i in range(1, n + 1)]
    arrays = {}
    for name, conv in zip(names, convs, strict=True):
        arrays[f"{name}_W"] = conv.weight.detach().permute(2, 3, 1, 0).numpy()
        arrays[f"{name}_b"] = conv.bias.detach().numpy()
    np.savez(tmp_path / "vgg16_weights.npz", **arrays)
    vgg = VGGFeatures(str(tmp_path / "vgg16_weights.npz"), layer="pool4", arch="vgg16")
    assert vgg.backbone == "vgg16-npz:vgg16_weights.npz"
    x = torch.randn(1, 3, 20, 20)
    torch.testing.assert_close(vgg.features(x), reference[:24](x))
    del arrays["conv5_3_W"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(KeyError, match="conv5_3"):
        VGGFeatures(str(tmp_path / "partial.npz"), arch="vgg16", layer="pool4")
