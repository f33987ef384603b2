"""DAGAN and the joint baseline train end to end; every weighted term reaches the logged total."""

from __future__ import annotations

import pytest
import torch

from csmri.app.train import build_module, train
from csmri.errors import ConfigError
from csmri.lit.adversarial import image_terms, with_image_size
from csmri.losses.dagan import dagan_freq, dagan_nmse
from tests.helpers import ADVERSARIAL, train_config

FAST = [  # besides FAST_TRAIN (one epoch, CSV logs)
    "data.acceleration=4",
    "data.batch_size=3",
    "data.eval_batch_size=6",
    "trainer.log_every_n_steps=1",
]


def _config(experiment, phantom_root, out, *extra):
    overrides = [f"experiment={experiment}", f"data.root={phantom_root}", *ADVERSARIAL[experiment], *FAST, *extra]
    return train_config(overrides, out)


@pytest.mark.parametrize("experiment", ["dagan", "joint"])
def test_short_training_run(experiment, phantom_root, tmp_path):
    train(_config(experiment, phantom_root, tmp_path, "+trainer.limit_train_batches=2"))
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss_d" in header and "train/adv" in header


@pytest.mark.parametrize(
    "experiment, expected",
    [
        ("dagan", {"adv": 1.0, "nmse": 15.0, "freq": 0.1, "vgg": 0.0025}),
        ("joint", {"mse": 1.0, "adv": 0.5, "feat": 0.5, "vgg": 1.0}),
    ],
)
def test_each_weight_reaches_the_total(experiment, expected, phantom_root, tmp_path):
    module = build_module(_config(experiment, phantom_root, tmp_path))
    assert module.normalizer.weights == expected
    from csmri.data import MRIDataModule
    from csmri.physics import complex_to_channels

    dm = MRIDataModule(str(phantom_root), acceleration=4, batch_size=2)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    output, extras = module.generate(batch)
    terms, _ = module.generator_terms(batch, output, extras, complex_to_channels(batch["target"]))
    module.normalizer.initialise(terms)
    total, normalised = module.normalizer(terms)
    # the total is exactly the weighted sum, and doubling one weight adds that term once more
    assert total.item() == pytest.approx(sum(w * normalised[f"{k}_norm"].item() for k, w in expected.items()), rel=1e-5)
    for name in expected:
        module.normalizer.weights[name] *= 2
        doubled, _ = module.normalizer(terms)
        module.normalizer.weights[name] /= 2
        added = expected[name] * normalised[f"{name}_norm"].item()
        assert doubled.item() - total.item() == pytest.approx(added, rel=1e-3, abs=1e-6 * abs(total.item()))


def test_image_terms():
    g = torch.Generator().manual_seed(0)
    out, target = torch.randn(2, 2, 8, 8, generator=g), torch.randn(2, 2, 8, 8, generator=g)
    terms = image_terms(out, target, {"mse", "nmse", "freq"})
    assert terms["mse"].item() == pytest.approx(((out - target) ** 2).mean().item(), rel=1e-6)
    # DAGAN's terms at DAGAN's scales (checked against numpy in tests/losses/test_dagan_terms.py)
    torch.testing.assert_close(terms["nmse"], dagan_nmse(out, target))
    torch.testing.assert_close(terms["freq"], dagan_freq(out, target))
    assert set(image_terms(out, target, {"nmse"})) == {"nmse"}


def test_with_image_size_fills_null_sizes_in_a_copy():
    """DAGAN's networks take their size from the training images: a null ``size`` of the generator or of D's net is
    filled in the returned config (what the checkpoint keeps); the caller's config is left as it was."""
    net = {
        "generator": {"size": None, "nf": 8},
        "discriminator": {"input": "image", "net": {"size": None, "nf": 4}},
        "perceptual": None,
    }
    filled = with_image_size(net, 64)
    assert filled == {
        "generator": {"size": 64, "nf": 8},
        "discriminator": {"input": "image", "net": {"size": 64, "nf": 4}},
        "perceptual": None,
    }
    assert net["generator"]["size"] is None and net["discriminator"]["net"]["size"] is None
    assert with_image_size({"generator": {"size": 32}, "discriminator": {"net": {}}}, 64) == {
        "generator": {"size": 32},  # a size that is set is kept
        "discriminator": {"net": {}},  # a net without a size is left without one
    }
    with pytest.raises(ConfigError, match=r"model\.net\.generator\.size is null and no image size was given"):
        with_image_size({"generator": {"size": None}}, None)
    with pytest.raises(ConfigError, match=r"model\.net\.discriminator\.net\.size is null"):
        with_image_size({"generator": {}, "discriminator": {"net": {"size": None}}}, None)
