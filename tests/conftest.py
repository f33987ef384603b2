"""Shared fixtures: tiny phantom data, the fast train config and a stage-1 checkpoint, made once per session; no
downloads. Constants and helpers shared by the tests live in :mod:`tests.helpers` (import them from there)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ["CSMRI_OFFLINE"] = "1"  # ImageNet VGG from the torch cache only: nothing downloads in tests


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
    from tests.helpers import TINY

    return write_phantom_dataset(tmp_path_factory.mktemp("phantom") / "data", progress=False, **TINY)


@pytest.fixture(scope="session")
def cfg_train_global(phantom_root: Path) -> DictConfig:
    """``conf/train.yaml`` with ``experiment=stage1`` on the tiny phantom and the fast test defaults
    (:data:`tests.helpers.FAST_TRAIN`: one epoch, CSV logs; a small RecNet), composed once per session.
    Tests take a copy through :func:`cfg_train`; never change this one."""
    from tests.helpers import STAGE1_SMALL, train_config

    return train_config(["experiment=stage1", f"data.root={phantom_root}", *STAGE1_SMALL])


@pytest.fixture
def cfg_train(cfg_train_global: DictConfig, tmp_path: Path) -> DictConfig:
    """A copy of :func:`cfg_train_global` that writes into ``tmp_path``; change it freely (``open_dict(cfg)`` to add
    keys such as ``trainer.limit_train_batches``)."""
    cfg = copy.deepcopy(cfg_train_global)
    cfg.paths.output_dir = str(tmp_path)
    return cfg


@pytest.fixture(scope="session")
def stage1_ckpt(cfg_train_global: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a very short stage-1 run (:func:`cfg_train_global`, two training batches)."""
    from omegaconf import open_dict

    from csmri.app.train import train

    cfg = copy.deepcopy(cfg_train_global)
    cfg.paths.output_dir = str(tmp_path_factory.mktemp("stage1"))
    with open_dict(cfg):
        cfg.trainer.limit_train_batches = 2
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"


def _order(item: pytest.Item) -> tuple[bool, float]:
    slow = item.get_closest_marker("slow")
    return slow is None, -float(slow.kwargs.get("seconds", 0)) if slow else 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked slow first, the longest (``@pytest.mark.slow(seconds=N)``) before the others, then in their own
    order: `make test`'s workers (``--dist worksteal``: an idle worker takes tests queued for the other) start on the
    long end-to-end runs and end on short tests, so neither waits long for the other at the end."""
    items.sort(key=_order)
