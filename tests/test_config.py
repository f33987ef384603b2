"""Every experiment composes and instantiates; typos are errors that name the key."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from csmri.app.train import build_callbacks, build_loggers, build_module, build_trainer
from csmri.config import override_key
from tests.helpers import ADVERSARIAL, TINY_STAGE2, compose_config, experiments


def experiment_overrides(experiment: str, request: pytest.FixtureRequest) -> list[str]:
    """What an experiment needs beyond the data root (a stage-1 checkpoint, no VGG download)."""
    if experiment == "stage2":
        return [f"model.net.recon_ckpt={request.getfixturevalue('stage1_ckpt')}", *TINY_STAGE2]
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
    cfg = compose_config("train", ["experiment=stage1", "model.net.nf=16", "model.net.nc=2"], tmp_path)
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
        "# @package _global_\ndefaults:\n  - stage1\nexperiment_name: my_stage1\nmodel: {net: {nf: 48}}\n"
    )
    cfg = compose("train", ["experiment=my_stage1"], config_dirs=[tmp_path])
    assert cfg.experiment_name == "my_stage1" and cfg.model.net.nf == 48
    assert cfg.model._target_ == "csmri.lit.ReconstructionModule" and cfg.model.net.nc == 3


def test_paper_optimiser_and_dagan_protocol_defaults(tmp_path):
    import torch

    stage1 = compose_config("train", ["experiment=stage1", f"data.root={tmp_path}"])
    assert list(stage1.model.optimizer.betas) == [0.5, 0.999] and stage1.model.optimizer.lr == 2e-4
    module = build_module(stage1)
    (optimizer,) = [module.configure_optimizers()]
    assert optimizer.defaults["betas"] == (0.5, 0.999)

    dagan = compose_config("train", ["experiment=dagan", f"data.root={tmp_path}"])
    assert dagan.data.batch_size == 25 and dagan.monitor.metric == "val/nmse" and dagan.monitor.mode == "min"
    assert dagan.callbacks.early_stopping.monitor == "val/nmse"
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-4)
    from csmri.lit.optim import build_scheduler

    scheduler = build_scheduler(dagan.model.scheduler, opt)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert lrs[0] == lrs[4] == 1e-4 and lrs[5] == lrs[9] == 5e-5 and lrs[10] == 2.5e-5  # halved every 5 epochs


def test_every_model_config_is_a_lightning_module_with_the_optimizer_written_once():
    """``model/<name>.yaml`` is the LightningModule (lightning-hydra-template's shape): ``_target_`` a LightningModule,
    its ``net``, the ``_partial_`` optimiser from the shared ``optimizer`` group and a ``scheduler`` nested."""
    import lightning as L
    from hydra.utils import get_class

    from csmri.config import config_dir

    names = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
    assert names == ["dagan", "joint", "recnet", "refine", "segnet", "vgg_autoencoder"]
    for name in names:
        model = compose_config("train", [f"model={name}"]).model
        assert issubclass(get_class(model._target_), L.LightningModule) and model._recursive_ is False
        assert "net" in model and model.optimizer._partial_ is True and model.loss == compose_config("train", []).loss
    optimiser = re.compile(r"_target_: torch\.optim\.[A-Z]")  # an optimiser class (not torch.optim.lr_scheduler)
    written = [p for p in config_dir().rglob("*.yaml") if optimiser.search(p.read_text())]
    assert [p.relative_to(config_dir()).as_posix() for p in written] == ["optimizer/adam.yaml"]


def test_dagan_size_follows_folder_sources():
    """DAGAN's networks take the data's image size from the data module when the module is built (the composed
    config leaves it null: resolving a config reads no data)."""
    from hydra.utils import instantiate

    from csmri.app.train import build_module
    from csmri.config import compose
    from tests.helpers import ADVERSARIAL

    tiny = [*ADVERSARIAL["dagan"], "model.net.generator.features=[4,4,4,4,4,4,4,4]"]  # 8 levels: 256 = 2 ** 8
    for overrides, size in ((["data=folder", "data.source.size=[96,96]"], 96), (["data=acdc"], 256)):
        cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", *overrides, *tiny])
        assert cfg.model.image_size is None and cfg.model.net.generator.size is None
        assert instantiate(cfg.data).expected_image_size() == size  # what build_module passes as image_size
    net = build_module(cfg).hparams.net  # acdc
    assert net["generator"]["size"] == 256 and net["discriminator"]["net"]["size"] == 256
    cfg = compose("train", ["experiment=dagan", "data.root=/nonexistent", "data=folder", *ADVERSARIAL["dagan"]])
    with pytest.raises(Exception, match="not known before it is prepared"):
        build_module(cfg)
    given = ["experiment=dagan", "data.root=/nonexistent", "data=folder", "model.image_size=64", *ADVERSARIAL["dagan"]]
    assert build_module(compose("train", given)).hparams.net["generator"]["size"] == 64  # no data needed


def test_override_key_strips_hydra_prefixes_and_the_value():
    assert override_key("trainer.max_epochs=3") == "trainer.max_epochs"
    assert override_key("+model.extra=a=b") == "model.extra"
    assert override_key("~callbacks.early_stopping") == "callbacks.early_stopping"
    assert override_key("++seed=1") == "seed"
