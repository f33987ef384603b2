"""Checkpoints of the other reconstruction stages (tiny, one short epoch each), shared by tests/app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ADVERSARIAL, TINY_STAGE2

SHORT = ["+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"]  # and the one epoch of FAST_TRAIN


def _train(overrides: list[str], out: Path) -> Path:
    from csmri.app.train import train
    from tests.helpers import train_config

    train(train_config([*overrides, *SHORT], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def stage2_ckpt(phantom_root: Path, stage1_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-2 checkpoint (tiny V, D) on top of ``stage1_ckpt``, with a non-zero gate so V matters."""
    import torch

    overrides = ["experiment=stage2", f"data.root={phantom_root}", f"model.net.recon_ckpt={stage1_ckpt}", *TINY_STAGE2]
    path = _train([*overrides, "data.batch_size=3"], tmp_path_factory.mktemp("stage2"))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"]["refinement.gate"] = torch.tensor(0.3)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def dagan_ckpt(phantom_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    overrides = ["experiment=dagan", f"data.root={phantom_root}", *ADVERSARIAL["dagan"], "data.batch_size=3"]
    return _train(overrides, tmp_path_factory.mktemp("dagan"))
