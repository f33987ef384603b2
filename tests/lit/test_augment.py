"""The segmentation nets' intensity augmentation: each transform against its definition, per-slice draws, and that
training steps see it."""

from __future__ import annotations

import math

import pytest
import torch

from csmri.lit.augment import IntensityAugment, gaussian_blur, low_resolution
from csmri.lit.segmentation import SegmentationModule

OFF = {name: 0.0 for name in ("noise_p", "blur_p", "low_resolution_p", "brightness_p", "contrast_p", "gamma_p")}


def _images(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_every_transform_off_is_the_identity():
    x = _images()
    assert torch.equal(IntensityAugment(**OFF)(x), x)


def test_gaussian_blur_keeps_constants_and_spreads_an_impulse_as_a_gaussian():
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 9, 9), 0.3), 1.0), torch.full((1, 1, 9, 9), 0.3))
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    out = gaussian_blur(impulse, 1.5)[0, 0]
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(out[7, 8] / out[7, 7]) == pytest.approx(math.exp(-0.5 / 1.5**2), rel=1e-5)  # one pixel off-centre
    assert float(out[8, 8] / out[7, 7]) == pytest.approx(math.exp(-1.0 / 1.5**2), rel=1e-5)  # one pixel diagonally


def test_low_resolution_at_zoom_one_is_the_identity_and_at_one_half_loses_detail():
    x = _images()
    assert torch.allclose(low_resolution(x, 1.0), x)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    blurred = low_resolution(checker.float()[None, None], 0.5)
    assert float(blurred.std()) < 0.5 * float(checker.float().std())


def test_brightness_contrast_and_gamma_follow_their_formulas():
    x = _images()
    assert torch.allclose(IntensityAugment(**{**OFF, "brightness_p": 1.0, "brightness": (2.0, 2.0)})(x), 2 * x)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    gamma = IntensityAugment(**{**OFF, "gamma_p": 1.0, "gamma": (2.0, 2.0)})(x)
    assert torch.allclose(gamma, peak * (x / peak) ** 2, atol=1e-6)
    contrast = IntensityAugment(**{**OFF, "contrast_p": 1.0, "contrast": (0.5, 0.5)})(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(contrast, (x - mean) * 0.5 + mean, atol=1e-6)  # halved contrast stays inside the range


def test_noise_has_the_drawn_fraction_of_each_slices_std():
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    x[1] *= 4  # a slice with 4x the std gets 4x the noise
    out = IntensityAugment(**{**OFF, "noise_p": 1.0, "noise_std": (0.5, 0.5)})(x, torch.Generator().manual_seed(2))
    for i in range(2):
        assert float((out[i] - x[i]).std()) == pytest.approx(0.5 * float(x[i].std()), rel=0.03)


def test_each_slice_draws_its_own_decision():
    x = torch.ones(2000, 1, 4, 4)
    out = IntensityAugment(**{**OFF, "brightness_p": 0.3, "brightness": (2.0, 2.0)})(
        x, torch.Generator().manual_seed(0)
    )
    changed = (out[:, 0, 0, 0] == 2.0).float().mean()
    assert abs(float(changed) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)  # within 4 binomial standard deviations


@pytest.mark.parametrize("bad", [{"blur_p": 1.5}, {"gamma": (1.5, 0.7)}, {"noise_std": (-0.1, 0.3)}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="intensity_augment"):
        IntensityAugment(**bad)


def test_training_steps_see_the_augmented_images_and_validation_steps_the_originals():
    # brightness x0 turns every training input into zeros
    module = SegmentationModule(intensity_augment={**OFF, "brightness_p": 1.0, "brightness": (0.0, 0.0)})
    module.log = lambda *args, **kwargs: None
    seen = []
    forward = module.net.forward
    module.net.forward = lambda x: (seen.append(x.detach().clone()), forward(x))[1]
    g = torch.Generator().manual_seed(0)
    batch = {
        "target": torch.complex(torch.rand(2, 32, 32, generator=g), torch.zeros(2, 32, 32)),
        "label": (torch.rand(2, 32, 32, generator=g) > 0.7).long(),
    }
    module.training_step(batch, 0)
    module.validation_step(batch, 0)
    assert torch.equal(seen[0], torch.zeros(2, 1, 32, 32))
    assert torch.equal(seen[1], batch["target"].abs().unsqueeze(1))


def test_a_checkpoint_of_a_net_trained_with_augmentation_loads(tmp_path):
    import lightning
    from omegaconf import OmegaConf

    from csmri.lit.checkpoints import load_module

    settings = OmegaConf.create({"blur_p": 0.5, "gamma": [0.8, 1.2]})  # as Hydra passes it
    module = SegmentationModule(intensity_augment=settings)
    path = tmp_path / "segnet.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "csmri_module": "segmentation", "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    loaded = load_module(str(path))
    assert loaded.intensity_augment == IntensityAugment(blur_p=0.5, gamma=(0.8, 1.2))
