"""Lightning's everyday Trainer arguments without `+`, the debug/ config group, "did you mean" for unknown keys and
one-line errors for arguments a class or the Trainer refuses."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from csmri.app.train import build_trainer, train, trainer_arguments
from csmri.config import compose
from csmri.errors import ConfigError
from tests.helpers import compose_config, run_csmri

TINY_STAGE1 = ["experiment=stage1", "model.net.nf=8", "data.batch_size=4", "logger=csv"]

# key=value as a user types it -> the attribute of the built Trainer that shows it arrived
EVERYDAY = {
    "limit_train_batches=2": ("limit_train_batches", 2),
    "limit_val_batches=0.5": ("limit_val_batches", 0.5),
    "limit_test_batches=3": ("limit_test_batches", 3),
    "val_check_interval=0.25": ("val_check_interval", 0.25),
    "accumulate_grad_batches=4": ("accumulate_grad_batches", 4),
    "check_val_every_n_epoch=3": ("check_val_every_n_epoch", 3),
    "num_sanity_val_steps=0": ("num_sanity_val_steps", 0),
    "log_every_n_steps=1": ("log_every_n_steps", 1),
    "max_steps=7": ("max_steps", 7),
    "gradient_clip_val=0.5": ("gradient_clip_val", 0.5),
    "overfit_batches=2": ("overfit_batches", 2),
}


def _trainer(tmp_path, *overrides: str) -> L.Trainer:
    cfg = compose_config("train", ["experiment=stage1", "data.root=/nowhere", *overrides], tmp_path)
    return build_trainer(cfg, [], [])


def test_everyday_trainer_arguments_need_no_plus(tmp_path):
    for override, (attribute, value) in EVERYDAY.items():
        trainer = _trainer(tmp_path, f"trainer.{override}")
        assert getattr(trainer, attribute) == value, override
    assert _trainer(tmp_path, "trainer.fast_dev_run=3").fast_dev_run == 3
    assert _trainer(tmp_path, "trainer.detect_anomaly=true")._detect_anomaly is True
    assert type(_trainer(tmp_path, "trainer.profiler=simple").profiler).__name__ == "SimpleProfiler"
    try:
        _trainer(tmp_path, "trainer.deterministic=true")
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_null_trainer_arguments_are_lightnings_defaults(tmp_path):
    """What trainer/default.yaml leaves null reaches the Trainer as Lightning's own default, not as None."""
    cfg = compose_config("train", ["experiment=stage1", "data.root=/nowhere"], tmp_path)
    declared_null = [k for k, v in cfg.trainer.items() if v is None]
    assert {"limit_train_batches", "val_check_interval", "accumulate_grad_batches", "num_sanity_val_steps"} <= set(
        declared_null
    )
    assert not set(declared_null) & set(trainer_arguments(cfg.trainer))
    ours, lightnings = build_trainer(cfg, [], []), L.Trainer(logger=False, enable_checkpointing=False)
    for attribute in ("limit_train_batches", "limit_val_batches", "val_check_interval", "accumulate_grad_batches",
                      "num_sanity_val_steps", "overfit_batches", "gradient_clip_val", "max_steps"):  # fmt: skip
        assert getattr(ours, attribute) == getattr(lightnings, attribute), attribute
    # None is a setting of its own for check_val_every_n_epoch (validate across epochs by val_check_interval)
    trainer = _trainer(tmp_path, "trainer.check_val_every_n_epoch=null", "trainer.val_check_interval=5")
    assert trainer.check_val_every_n_epoch is None


def test_plus_still_works_for_the_declared_null_arguments(tmp_path):
    """Command lines written when these needed `+` keep working."""
    trainer = _trainer(tmp_path, "+trainer.limit_train_batches=2", "+trainer.enable_model_summary=false")
    assert trainer.limit_train_batches == 2


@pytest.mark.parametrize(
    ("debug", "expected"),
    [
        ("fdr", {"fast_dev_run": True}),
        ("overfit", {"overfit_batches": 2, "max_epochs": 50}),
        ("profiler", {"profiler": "simple", "max_epochs": 1}),
        ("limit", {"limit_train_batches": 4, "limit_val_batches": 2, "max_epochs": 3}),
    ],
)
def test_debug_configs_compose(debug, expected):
    cfg = compose("train", [f"debug={debug}", "experiment=stage2"], return_hydra_config=True)
    assert {k: cfg.trainer[k] for k in expected} == expected
    assert list(cfg.logger) == ["csv"]  # no W&B run for a debug run
    assert "/debug/stage2/" in cfg.hydra.run.dir
    assert cfg.experiment_name == "stage2" and cfg.trainer.max_epochs != 200  # over the experiment's own settings


def test_debug_fdr_runs_one_batch(tmp_path, phantom_root):
    cfg = compose_config("train", [*TINY_STAGE1, f"data.root={phantom_root}", "debug=fdr"], tmp_path / "run")
    train(cfg)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["status"] == "finished"
    assert not (tmp_path / "run" / "checkpoints").exists()  # fast_dev_run saves none


def test_debug_overfit_and_profiler_run(tmp_path, phantom_root, caplog):
    overrides = [*TINY_STAGE1, f"data.root={phantom_root}", "trainer.max_epochs=2"]
    train(compose_config("train", [*overrides, "debug=overfit", "trainer.overfit_batches=1"], tmp_path / "o"))
    losses = [
        float(line.split(",")[-1] or "nan")
        for line in (tmp_path / "o" / "csv" / "metrics.csv").read_text().splitlines()[1:]
    ]
    assert losses  # it logged
    cfg = compose_config("train", [*overrides, "debug=profiler", "trainer.limit_val_batches=1"], tmp_path / "p")
    with caplog.at_level("INFO"):
        train(cfg)
    assert "FIT Profiler Report" in caplog.text and "run_training_epoch" in caplog.text


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("trainer.limit_train_batchs=2", "trainer.limit_train_batches"),
        ("data.batchsize=3", "data.batch_size"),
        ("model.net.nff=3", "model.net.nf"),
        ("seeds=1", "seed"),
        ("model.optimizer.lrr=0.1", "model.optimizer.lr"),
    ],
)
def test_unknown_keys_suggest_the_nearest(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean `{suggestion}`"):
        compose("train", ["experiment=stage1", override])


def test_an_argument_a_class_refuses_names_the_key(tmp_path, phantom_root):
    base = [*TINY_STAGE1, f"data.root={phantom_root}"]
    with pytest.raises(
        ConfigError, match=r"`model.net.nff` is not an option of model.net .*did you mean `model.net.nf`"
    ):
        train(compose_config("train", [*base, "+model.net.nff=3"], tmp_path / "a"))
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["status"] == "failed" and "model.net.nff" in info["error"]
    with pytest.raises(ConfigError, match=r"`data.batchsize` .*did you mean `data.batch_size`"):
        train(compose_config("train", [*base, "+data.batchsize=3"], tmp_path / "b"))
    with pytest.raises(ConfigError, match="accumulate_grad_batches must be"):
        train(compose_config("train", [*base, "trainer.accumulate_grad_batches=0"], tmp_path / "c"))
    with pytest.raises(ConfigError, match="invalid trainer settings"):
        train(compose_config("train", [*base, "trainer.val_check_interval=-1"], tmp_path / "d"))


@pytest.mark.slow
def test_cli_errors_are_one_line_with_status_2(tmp_path, phantom_root):
    result = run_csmri(
        "train", *TINY_STAGE1, f"data.root={phantom_root}", "+model.net.nff=3", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("Seed set to")]
    assert "Traceback" not in result.stderr and lines[0].startswith("csmri: error: `model.net.nff`"), result.stderr
    assert len(lines) == 2 and lines[1].startswith("  hint:"), result.stderr
    if torch.cuda.is_available():
        return
    result = run_csmri("train", *TINY_STAGE1, f"data.root={phantom_root}", "trainer.accelerator=gpu",
                       f"hydra.run.dir={tmp_path}/g")  # fmt: skip
    assert result.returncode == 2 and "no GPU on this machine: use trainer.accelerator=cpu" in result.stderr
    assert "Traceback" not in result.stderr
