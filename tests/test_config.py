"""Every experiment composes and instantiates; typos are errors that name the key."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from csmri.app.train import build_callbacks, build_loggers, build_module, build_trainer
from tests.helpers import ADVERSARIAL, TINY_STAGE2, compose_config, experiments


def experiment_overrides(experiment: str, request: pytest.FixtureRequest) -> list[str]:
    """What an experiment needs beyond the data root (a stage-1 checkpoint, no VGG download)."""
    if experiment == "stage2":
        return [f"model.recon_ckpt={request.getfixturevalue('stage1_ckpt')}", *TINY_STAGE2]
    if experiment in ADVERSARIAL:
        return ADVERSARIAL[experiment]
    return []


@pytest.mark.parametrize("experiment", experiments())
def test_experiment_composes_and_instantiates(experiment, phantom_root, tmp_path, request):
    overrides = [f"experiment={experiment}", f"data.root={phantom_root}", *experiment_overrides(experiment, request)]
    cfg = compose_config("train", overrides, tmp_path)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert instantiate(cfg.data).root == phantom_root
    module = build_module(cfg)
    assert sum(p.numel() for p in module.parameters()) > 0
    trainer = build_trainer(cfg, build_callbacks(cfg), build_loggers(cfg))
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_model_override_reaches_the_network(phantom_root, tmp_path):
    cfg = compose_config("train", ["experiment=stage1", "model.nf=16", "model.nc=2"], tmp_path)
    net = build_module(cfg).net
    assert len(net.blocks) == 2 and net.blocks[0][0].out_channels == 16


@pytest.mark.parametrize("data", ["phantom", "folder", "h5"])
def test_runs_with_different_seeds_are_validated_on_the_same_masks(data, phantom_root):
    configs = [compose_config("train", [f"data={data}", f"data.root={phantom_root}", f"seed={s}"]) for s in (0, 1)]
    samplers = [instantiate(cfg.data).sampler for cfg in configs]
    assert [s.seed for s in samplers] == [0, 1] and [s.eval_seed for s in samplers] == [0, 0]
    masks = [s.evaluation_mask("p/000", (32, 32))[0] for s in samplers]
    assert torch.equal(masks[0], masks[1])


def test_typo_in_override_names_the_key():
    with pytest.raises(ConfigCompositionException, match="model.nff"):
        compose_config("train", ["model.nff=3"])


def test_unknown_experiment_is_an_error():
    with pytest.raises(ConfigCompositionException, match="stage9"):
        compose_config("train", ["experiment=stage9"])


def test_typo_inside_a_config_file_is_an_error(tmp_path):
    # a key the constructor does not know (as from a misspelt yaml entry) fails at instantiation
    cfg = compose_config("train", ["+data.batchsize=3"], tmp_path)
    with pytest.raises(Exception, match="batchsize"):
        instantiate(cfg.data)


def test_a_users_own_experiment_file_extends_a_shipped_one(tmp_path):
    from csmri.config import compose

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "my_stage1.yaml").write_text(
        "# @package _global_\ndefaults:\n  - stage1\nexperiment_name: my_stage1\nmodel: {nf: 48}\n"
    )
    cfg = compose("train", ["experiment=my_stage1"], config_dirs=[tmp_path])
    assert cfg.experiment_name == "my_stage1" and cfg.model.nf == 48
    assert cfg.module._target_ == "csmri.lit.ReconstructionModule" and cfg.model.nc == 3


def test_paper_optimiser_and_dagan_protocol_defaults(tmp_path):
    import torch

    stage1 = compose_config("train", ["experiment=stage1", f"data.root={tmp_path}"])
    assert list(stage1.module.optimizer.betas) == [0.5, 0.999] and stage1.module.optimizer.lr == 2e-4
    module = build_module(stage1)
    (optimizer,) = [module.configure_optimizers()]
    assert optimizer.defaults["betas"] == (0.5, 0.999)

    dagan = compose_config("train", ["experiment=dagan", f"data.root={tmp_path}"])
    assert dagan.data.batch_size == 25 and dagan.monitor.metric == "val/nmse" and dagan.monitor.mode == "min"
    assert dagan.callbacks.early_stopping.monitor == "val/nmse"
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-4)
    from csmri.lit.optim import build_scheduler

    scheduler = build_scheduler(dagan.module.scheduler, opt)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs[0] == lrs[4] == 1e-4 and lrs[5] == lrs[9] == 5e-5 and lrs[10] == 2.5e-5  # halved every 5 epochs


def test_dagan_size_follows_folder_sources():
    from csmri.config import compose

    for overrides, size in ((["data=folder", "data.source.size=[96,96]"], 96), (["data=acdc"], 256)):
        cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", *overrides])
        assert cfg.model.generator.size == size
    cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", "data=folder"])
    with pytest.raises(Exception, match="not known before it is prepared"):
        _ = cfg.model.generator.size
