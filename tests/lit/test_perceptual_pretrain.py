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
