"""The typed loss configs (csmri.losses.config): one source of every default, unknown keys and wrong types rejected,
and the hyper-parameters of checkpoints written before the replay / VGG settings left the loss config translated."""

from __future__ import annotations

import inspect

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from csmri.errors import ConfigError, user_error
from csmri.lit.checkpoints import upgrade_legacy_hparams
from csmri.losses.config import AdversarialLoss, CEDiceLoss, adversarial_loss
from csmri.losses.normalizer import LossNormalizer
from csmri.losses.segmentation import CEDiceLoss as CEDiceLossModule
from tests.helpers import compose_config

LEGACY = "tests/fixtures/legacy_v0_1/stage2.ckpt"


@pytest.mark.parametrize("loss", ["visual", "visual_released", "joint", "dagan"])
def test_adversarial_loss_files_are_typed_and_take_their_defaults_from_the_schema(loss):
    cfg = compose_config("train", [f"loss={loss}"])
    assert OmegaConf.get_type(cfg.loss) is AdversarialLoss
    assert set(cfg.loss) == set(AdversarialLoss.__dataclass_fields__)
    if loss in ("visual", "joint"):  # neither file states alpha_target or label_smoothing: the schema's defaults
        assert cfg.loss.alpha_target == AdversarialLoss.alpha_target == 0.1
        assert cfg.loss.label_smoothing == AdversarialLoss.label_smoothing == 0.1


def test_the_normaliser_defaults_are_the_schemas():
    defaults = {k: p.default for k, p in inspect.signature(LossNormalizer).parameters.items()}
    assert defaults["mode"] == AdversarialLoss.normalizer
    assert defaults["alpha"] == AdversarialLoss.alpha and defaults["alpha_target"] == AdversarialLoss.alpha_target


def test_ce_dice_config_defaults_are_the_losss_own():
    signature = inspect.signature(CEDiceLossModule).parameters
    fields = {k: v.default for k, v in CEDiceLoss.__dataclass_fields__.items() if k != "_target_"}
    assert fields == {k: p.default for k, p in signature.items()}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("loss.alpha_targt=0.2", "unknown config key `loss.alpha_targt`"),
        ("loss.alpha_target=abc", "`loss.alpha_target` must be a float, got 'abc'"),
        ("loss.weights.adv=x", "`loss.weights.adv` must be a float, got 'x'"),
        ("loss.replay.capacity=3", "unknown config key `loss.replay.capacity`"),  # moved to the discriminator config
    ],
)
def test_typos_and_wrong_types_in_the_loss_are_one_line_errors(override, expected):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("train", ["experiment=stage2", override])
    error = user_error(err.value)
    assert error is not None and expected in error.message and "\n" not in error.message


def test_a_loss_dict_from_python_is_checked_against_the_schema():
    loss = adversarial_loss({"weights": {"adv": 1.0}})
    assert loss == {"normalizer": "first_step", "weights": {"adv": 1.0}, "alpha": "auto"} | {
        "alpha_target": 0.1,
        "label_smoothing": 0.1,
    }
    with pytest.raises(ConfigError, match="loss.vgg_cache_mb"):
        adversarial_loss({"weights": {"adv": 1.0}, "vgg_cache_mb": 10})
    with pytest.raises(ConfigError, match="loss.weights"):
        adversarial_loss({"alpha": None})  # no terms named


def test_hparams_of_checkpoints_written_before_the_move_are_translated():
    old = {
        "net": {"discriminator": {"input": "magnitude", "net": {"_target_": "x"}}, "perceptual": {"_target_": "y"}},
        "loss": {
            "weights": {"adv": 1.0},
            "replay": {"capacity": 7, "p": 0.25},
            "vgg_cache_mb": 5,
            "vgg_precision": "32",
        },
        "lr": 1e-3,
        "betas": [0.9, 0.99],
    }
    new = upgrade_legacy_hparams(old)
    assert new["loss"] == {"weights": {"adv": 1.0}}
    assert new["net"]["discriminator"] == {
        "input": "magnitude",
        "net": {"_target_": "x"},
        "replay": {"capacity": 7, "p": 0.25},
    }
    assert new["vgg_cache_mb"] == 5 and new["vgg_precision"] == "32"
    assert new["optimizer"]["lr"] == 1e-3 and new["optimizer"]["betas"] == [0.9, 0.99] and "lr" not in new
    assert upgrade_legacy_hparams(new) == new  # today's hyper-parameters pass unchanged


def test_a_stage2_checkpoint_with_the_vgg_settings_in_its_loss_loads_with_them(tmp_path):
    from csmri.eval.methods import load_module

    checkpoint = torch.load(LEGACY, map_location="cpu", weights_only=True)
    loss = checkpoint["hyper_parameters"]["loss"]
    loss.update(vgg_cache_mb=3, vgg_precision="32", replay={"capacity": 9, "p": 0.5})  # as written until now
    torch.save(checkpoint, tmp_path / "stage2.ckpt")
    module = load_module(tmp_path / "stage2.ckpt")
    assert module.hparams.vgg_precision == "32" and module.hparams.vgg_cache_mb == 3
    assert module.replay.capacity == 9 and "replay" not in module.hparams.loss
