"""The offline perceptual backbone: VGG-19 trained as an autoencoder, exported as weights VGGFeatures loads."""

from __future__ import annotations

import json

import pytest
import torch

from csmri.app.train import train
from csmri.lit import precision
from csmri.models.vgg import LAYERS, VGGFeatures
from tests.helpers import train_config


@pytest.mark.slow
def test_autoencoder_trains_and_exports_weights_the_perceptual_loss_loads(phantom_root, tmp_path):
    overrides = [
        "experiment=vgg_autoencoder",
        f"data.root={phantom_root}",
        "data.batch_size=4",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "model.net.layer=relu2_2",  # a shallow encoder keeps the test fast; relu5_4 by default
        "model.net.decoder_channels=[16]",
    ]
    train(train_config(overrides, tmp_path))
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["precision"] == precision.resolve_precision("auto", "cpu", wide=True)  # VGG-width: bf16 where native
    weights = tmp_path / "vgg19_autoencoder.pth"
    assert weights.is_file()
    state = torch.load(weights, weights_only=True)
    assert {k.split(".")[0] for k in state} == {"features"}  # no classifier: ~80 MB, not ~575 MB
    assert len(state) == 2 * 16  # weight and bias of VGG-19's 16 convolutions, past the encoder's too
    untrained = VGGFeatures(weights="random", layer="relu2_2", seed=0)  # the same seeded initialisation
    trained = VGGFeatures(weights=str(weights), layer="relu2_2")
    assert trained.backbone == "vgg19-file:vgg19_autoencoder.pth"
    conv = f"features.{LAYERS['relu2_2'] - 1}.weight"  # the last conv of the encoder moved during training
    assert not torch.equal(state[conv], untrained.features[LAYERS["relu2_2"] - 1].weight)
    x = torch.rand(2, 64, 64)
    assert trained(x).shape == untrained(x).shape


def _shallow_autoencoder():
    from csmri.lit.perceptual import PerceptualPretrainModule

    # relu1_2: two convolutions, no max-pool, so the decoder is a single 3x3 convolution (cheap to build and run)
    return PerceptualPretrainModule(net={"layer": "relu1_2", "seed": 0, "decoder_channels": []})


def test_the_encoder_sees_the_grey_image_normalised_as_imagenet_vgg_expects():
    module = _shallow_autoencoder().eval()
    x = torch.rand(2, 16, 16)
    # torchvision's ImageNet normalisation, written out here: the grey image on all three channels
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = torch.stack([x, x, x], dim=1)
    with torch.no_grad():
        expected = module.decoder(module.encoder((rgb - mean) / std))[:, 0]
        assert torch.allclose(module(x), expected, atol=1e-6)


def test_the_default_optimiser_checkpoint_tag_and_export_into_a_new_folder(tmp_path):
    module = _shallow_autoencoder()
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    settings = [(g["lr"], tuple(g["betas"]), g["weight_decay"]) for g in optimizer.param_groups]
    assert settings == [(1e-4, (0.9, 0.999), 0)]
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint == {"csmri_module": "perceptual_pretrain"}  # what csmri.inference reads to rebuild a checkpoint
    path = module.export_weights(tmp_path / "not" / "yet" / "vgg.pth")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["vgg.pth"]
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["features.0.weight"], module.encoder[0].weight)
