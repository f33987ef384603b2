"""`csmri train` in-process (csmri/app/train.py): a missing value, a trainer typo and an unwritable run folder fail
before training, with the run recorded as failed."""

from __future__ import annotations

import json
import os

import pytest
from omegaconf import open_dict

from csmri.app.train import train
from csmri.errors import ConfigError, MissingValueError, TrainingError
from tests.helpers import compose_config


def test_missing_value_and_trainer_typo_in_process(tmp_path, cfg_train):
    with pytest.raises(MissingValueError, match="model.net.recon_ckpt"):
        train(compose_config("train", ["experiment=stage2"], tmp_path / "a"))
    cfg = cfg_train
    cfg.paths.output_dir = str(tmp_path / "b")
    with open_dict(cfg):
        cfg.trainer.max_epoch = 1  # a typo of trainer.max_epochs
    with pytest.raises(ConfigError, match="max_epochs"):
        train(cfg)
    assert json.loads((tmp_path / "b" / "run_info.json").read_text())["status"] == "failed"


def test_unwritable_output_dir_fails_before_training(tmp_path, cfg_train):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root ignores permissions: a file where the folder should be
        blocker.write_text("")
        out = blocker / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "run"
    cfg_train.paths.output_dir = str(out)
    with pytest.raises(TrainingError, match="cannot write into the run folder"):
        train(cfg_train)
