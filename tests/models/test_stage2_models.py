import pytest
import torch

from csmri.errors import PerceptualWeightsUnavailable
from csmri.models import GatedRefinement, PatchDiscriminator, UNet, VGGFeatures
from csmri.models.vgg import LAYERS


def test_zero_gate_returns_base_exactly_and_blocks_gradients():
    refinement = GatedRefinement(UNet(features=(8, 16)), gate_init=0.0)
    base = torch.randn(3, 2, 32, 32) * 0.7
    refined, x_v = refinement(base)
    assert torch.equal(refined, base)
    refined.square().mean().backward()  # any loss on x_hat (adversarial, perceptual)
    assert all(p.grad is None or torch.all(p.grad == 0) for p in refinement.refiner.parameters())
    assert refinement.gate.grad is not None and refinement.gate.grad != 0
    assert x_v.shape == base.shape


def test_refinement_is_added_in_the_scaled_range_and_unscaled():
    class Constant(torch.nn.Module):
        def forward(self, x):
            assert x.abs().max() <= 1.0 + 1e-6  # V sees R scaled to (-1, 1)
            return torch.full_like(x, 0.5)

    refinement = GatedRefinement(Constant(), gate_init=0.2)
    base = torch.randn(2, 2, 8, 8)
    base[1] *= 100.0
    refined, _ = refinement(base)
    scale = base.abs().amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(refined, base + scale * 0.2 * 0.5)


def test_real_only_refines_the_real_channel():
    refinement = GatedRefinement(
        UNet(in_channels=1, out_channels=1, features=(4, 8)), gate_init=1.0, channels="real_only"
    )
    base = torch.randn(2, 2, 16, 16)
    refined, x_v = refinement(base)
    assert x_v.shape == (2, 1, 16, 16)
    assert torch.equal(refined[:, 1], base[:, 1]) and not torch.equal(refined[:, 0], base[:, 0])
    with pytest.raises(ValueError, match="channels"):
        GatedRefinement(torch.nn.Identity(), channels="magnitude")


def test_patch_discriminator_layout_and_features():
    d = PatchDiscriminator()
    convs = [next(m for m in layer if isinstance(m, torch.nn.Conv2d)) for layer in d.layers]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1024, 1024]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 2, 1] and all(c.kernel_size == (4, 4) for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.layers[0])
    assert [any(isinstance(m, torch.nn.Dropout2d) for m in layer) for layer in d.layers] == [False] * 3 + [True] * 3
    assert abs(convs[2].weight.std().item() - 0.02) < 0.002
    logits, features = d(torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 1, 2, 2) and len(features) == 6
    logits, _ = d(torch.randn(1, 1, 128, 96))
    assert logits.shape == (1, 1, 4, 3)
    with pytest.raises(ValueError, match="at least 32"):
        d(torch.randn(1, 1, 16, 16))


def test_two_fewer_strides_give_the_papers_patch_grid_at_a_quarter_of_its_size():
    small = (8, 8, 16, 16, 32, 32)  # the grid depends on the strides, not the filters
    paper = PatchDiscriminator(features=small).eval()  # strides 2,2,2,2,2,1 on the paper's 512^2 images
    quick = PatchDiscriminator(features=small, strides=(2, 2, 2, 1, 1, 1)).eval()  # the quick profile's, at 128^2
    with torch.no_grad():
        assert paper(torch.randn(1, 1, 512, 512))[0].shape[-2:] == (16, 16)
        assert paper(torch.randn(1, 1, 128, 128))[0].shape[-2:] == (4, 4)
        logits, features = quick(torch.randn(1, 1, 128, 128))
    assert logits.shape[-2:] == (16, 16) and [f.shape[-1] for f in features] == [64, 32, 16, 16, 16, 16]


def test_vgg_random_is_frozen_seeded_and_not_in_state_dict():
    vgg = VGGFeatures("random", layer="relu2_2", seed=3)
    assert vgg.backbone == "vgg19-random"
    assert not any(p.requires_grad for p in vgg.parameters())
    parent = torch.nn.ModuleDict({"vgg": vgg, "other": torch.nn.Linear(2, 2)})
    assert all(not k.startswith("vgg") for k in parent.state_dict())
    parent.load_state_dict(parent.state_dict())  # strict loading still works without VGG entries
    vgg.train()
    assert not vgg.training
    again = VGGFeatures("random", layer="relu2_2", seed=3)
    x = torch.rand(2, 32, 32)
    torch.testing.assert_close(vgg(x), again(x))
    assert vgg(x).shape == (2, 128, 16, 16)


def test_vgg_imagenet_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PerceptualWeightsUnavailable, match="vgg19-dcbb9e9d.pth") as err:
        VGGFeatures("imagenet")
    assert str(tmp_path) in str(err.value) and "allow_random_fallback" in str(err.value)
    stand_in = VGGFeatures("imagenet", allow_random_fallback=True, layer="relu1_2")
    assert stand_in.backbone == "vgg19-random"


def test_offline_mode_never_tries_a_download(tmp_path, monkeypatch):
    import torchvision.models._api as weights_api

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", no_download)
    monkeypatch.setenv("CSMRI_OFFLINE", "1")
    with pytest.raises(PerceptualWeightsUnavailable, match="CSMRI_OFFLINE=1: no download attempted"):
        VGGFeatures("imagenet")
    assert VGGFeatures("imagenet", allow_random_fallback=True, layer="relu1_2").backbone == "vgg19-random"
    monkeypatch.setenv("CSMRI_OFFLINE", "0")  # online: torchvision's download is what runs
    with pytest.raises(PerceptualWeightsUnavailable, match="a download was attempted"):
        VGGFeatures("imagenet")


@pytest.mark.slow
def test_vgg_from_local_file(tmp_path):
    from torchvision.models import vgg19

    path = tmp_path / "vgg.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    assert VGGFeatures(str(path), layer="relu1_2").backbone == "vgg19-file:vgg.pth"
    with pytest.raises(FileNotFoundError, match="imagenet"):
        VGGFeatures(str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_vgg_from_a_features_only_file_and_refusal_of_other_files(tmp_path):
    from torchvision.models import vgg19

    features = vgg19(weights=None).features
    for p in features.parameters():
        torch.nn.init.normal_(p)  # unlike any initialisation, so a silent fallback cannot pass
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / "features.pth"
    torch.save(state, path)
    loaded = VGGFeatures(str(path), layer="relu2_2")
    assert loaded.backbone == "vgg19-file:features.pth"
    x = torch.rand(1, 1, 16, 16)
    rgb = (x.expand(-1, 3, -1, -1) - loaded.mean) / loaded.std
    torch.testing.assert_close(loaded(x), features[: LAYERS["relu2_2"] + 1](rgb))

    torch.save({k: v for k, v in state.items() if not k.startswith("features.34.")}, tmp_path / "partial.pth")
    with pytest.raises(KeyError, match=r"partial.pth is not a torchvision vgg19 state dict: missing \['features.34"):
        VGGFeatures(str(tmp_path / "partial.pth"), layer="relu1_2")
    torch.save({**state, "head.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(KeyError, match=r"unexpected \['head.weight'\]"):
        VGGFeatures(str(tmp_path / "extra.pth"), layer="relu1_2")
