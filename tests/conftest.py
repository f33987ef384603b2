"""Shared fixtures: tiny phantom data and a stage-1 checkpoint made once per session; no downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["CSMRI_OFFLINE"] = "1"  # ImageNet VGG from the torch cache only: nothing downloads in tests

TINY = {"n_patients": 4, "size": 64, "n_slices": 6, "seed": 0}
# tiny networks and no VGG download for every stage-2 run in the tests
TINY_STAGE2 = [
    "model.net.refine.net.features=[8,16,32]",
    "model.net.discriminator.net.features=[8,16,16,32,32,32]",
    "model.net.perceptual.weights=random",
    "model.net.perceptual.layer=relu2_2",
    "model.log_images_every_n_steps=2",
]
# tiny DAGAN / joint baselines (64x64 phantom)
ADVERSARIAL = {
    "dagan": [
        "model.net.generator.features=[8,16,16,16,16,16]",
        "model.net.discriminator.net.max_features=32",
        "model.net.perceptual.weights=random",
        "model.net.perceptual.layer=relu1_2",
    ],
    "joint": [
        "model.net.generator.nf=8",
        "model.net.discriminator.net.features=[8,16,16,32,32,32]",
        "model.net.perceptual.weights=random",
        "model.net.perceptual.layer=relu1_2",
    ],
}


@pytest.fixture(scope="session", autouse=True)
def no_weight_downloads():
    """Any attempt to download pretrained weights in-process fails at once (tests never download)."""
    from urllib.error import URLError

    import torchvision.models._api as weights_api

    def refuse(url: str, *args, **kwargs):
        raise URLError(f"downloads are disabled in tests ({url})")

    original = weights_api.load_state_dict_from_url
    weights_api.load_state_dict_from_url = refuse
    yield
    weights_api.load_state_dict_from_url = original


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-patient (2/1/1 split), 6-slice, 64x64 phantom dataset."""
    from csmri.data.sources.phantom import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", progress=False, **TINY)


@pytest.fixture(scope="session")
def stage1_ckpt(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a very short stage-1 run (small RecNet) on the tiny phantom."""
    from tests.helpers import train_best_checkpoint

    return train_best_checkpoint(
        tmp_path_factory.mktemp("stage1"),
        [
            "experiment=stage1",
            f"data.root={phantom_root}",
            "trainer.max_epochs=1",
            "logger=csv",
            "model.net.nf=8",
            "data.batch_size=4",
            "+trainer.limit_train_batches=2",
        ],
    )
