"""DAGAN's loss terms against direct numpy implementations of the formulas in its released code."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csmri.losses.dagan import (
    DAGAN_VGG_MEAN,
    DAGANVGGFeatures,
    dagan_freq,
    dagan_nmse,
    dagan_nmse_01,
    dagan_vgg,
    dagan_vgg_input,
)
from csmri.losses.perceptual import PerceptualLoss
from csmri.metrics.image import magnitude


def _two_channel(mag: np.ndarray, phase: np.ndarray) -> torch.Tensor:
    """(B, H, W) magnitude and phase -> (B, 2, H, W) [real, imag] float64."""
    z = mag * np.exp(1j * phase)
    return torch.from_numpy(np.stack([z.real, z.imag], axis=1))


def _random_pair(seed: int = 0, shape=(3, 6, 5)) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    m_out, m_tgt = rng.uniform(0, 1.2, shape), rng.uniform(0, 1, shape)
    out = _two_channel(m_out, rng.uniform(-np.pi, np.pi, shape))
    tgt = _two_channel(m_tgt, rng.uniform(-np.pi, np.pi, shape))
    return m_out, m_tgt, out, tgt


# -- NMSE --------------------------------------------------------------------------------------------


def test_nmse_is_the_per_image_root_on_the_dagan_range():
    m_out, m_tgt, out, tgt = _random_pair()
    a, b = 2 * m_out - 1, 2 * m_tgt - 1  # DAGAN's [-1, 1] images
    expected = np.mean([np.sqrt(((a[i] - b[i]) ** 2).sum()) / np.sqrt((b[i] ** 2).sum()) for i in range(a.shape[0])])
    assert dagan_nmse(out, tgt).item() == pytest.approx(expected, rel=1e-10)
    # magnitudes and complex images give the same number as 2-channel images
    assert dagan_nmse(torch.from_numpy(m_out), torch.from_numpy(m_tgt)).item() == pytest.approx(expected, rel=1e-10)


def test_nmse_hand_example_averages_images_not_pixels():
    tgt = torch.ones(2, 4, 4)  # b = 1 everywhere
    out = torch.stack([torch.full((4, 4), 0.75), torch.ones(4, 4)])  # a = 0.5 (ratio 0.5) and a = b (ratio 0)
    assert dagan_nmse(out, tgt).item() == pytest.approx(0.25)  # pooled: sqrt(4/32) = 0.354; squared: 0.125


def test_nmse_denominators_are_guarded_only_against_zero():
    """One-pixel images whose norms are below 1: the eps guard must not floor them (only a zero norm is guarded)."""
    # [-1, 1] range: b = 2 * 0.6 - 1 = 0.2, a = 2 * 0.5 - 1 = 0 -> |a - b| / |b| = 1
    assert dagan_nmse(torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.6)).item() == pytest.approx(1.0, rel=1e-5)
    # [0, 1] range: |0.6 - 0.3| / 0.3 = 1
    assert dagan_nmse_01(torch.full((1, 1, 1), 0.6), torch.full((1, 1, 1), 0.3)).item() == pytest.approx(1.0, rel=1e-5)
    assert torch.isfinite(dagan_nmse_01(torch.ones(1, 2, 2), torch.zeros(1, 2, 2)))  # a zero target stays finite


def test_validation_nmse_is_dagans_nmse_0_1_and_selects_the_dagan_model():
    """DAGAN keeps the model with the lowest validation ``nmse_0_1``: the per-image root NMSE of the images mapped to
    [0, 1] ((x + 1) / 2 of its [-1, 1] images, i.e. csmri's magnitudes), averaged over images (train.py)."""
    from csmri.lit.adversarial import AdversarialReconstructionModule
    from tests.helpers import compose_config

    m_out, m_tgt, out, tgt = _random_pair(3)
    expected = np.mean([np.sqrt(((m_out[i] - m_tgt[i]) ** 2).sum() / (m_tgt[i] ** 2).sum()) for i in range(3)])
    assert dagan_nmse_01(out, tgt).item() == pytest.approx(expected, rel=1e-10)
    assert abs(dagan_nmse(out, tgt).item() - expected) > 0.05  # the [-1, 1] loss term is another number
    logged = {}
    module = SimpleNamespace(log=lambda name, value, **kw: logged.update({name: value}))  # what it logs, unbound
    AdversarialReconstructionModule.log_validation_extras(module, {"target": tgt}, out, {}, tgt)  # type: ignore[arg-type]
    assert logged["val/nmse"].item() == pytest.approx(expected, rel=1e-10)
    cfg = compose_config("train", ["experiment=dagan", "data.root=unused"])
    assert (cfg.monitor.metric, cfg.monitor.mode) == ("val/nmse", "min")
    stop = cfg.callbacks.early_stopping
    assert (stop.monitor, stop.mode, stop.patience) == ("val/nmse", "min", 10)  # config.py: early_stopping_num = 10


# -- frequency --------------------------------------------------------------------------------------


def test_freq_is_the_mse_of_unnormalised_fft_magnitudes_of_01_images():
    m_out, m_tgt, out, tgt = _random_pair(1, shape=(2, 8, 6))
    u_out, u_tgt = ((2 * m_out - 1) + 1) / 2, ((2 * m_tgt - 1) + 1) / 2  # DAGAN's (x + 1) / 2
    diff = np.abs(np.fft.fft2(u_out)) - np.abs(np.fft.fft2(u_tgt))
    expected = np.mean(np.mean(diff**2, axis=(1, 2)))
    assert dagan_freq(out, tgt).item() == pytest.approx(expected, rel=1e-5)


def test_freq_hand_example_has_the_unnormalised_scale():
    # a constant 1 image against 0: |FFT2| is 16 at DC, 0 elsewhere -> mean of 16^2 over 16 frequencies = 16
    assert dagan_freq(torch.ones(1, 4, 4), torch.zeros(1, 4, 4)).item() == pytest.approx(16.0)
    # not the orthonormal k-space MSE (that would be the image MSE, 1)


def test_freq_takes_half_precision_images_to_float32():
    """Under bf16 autocast the images reach the term in bf16, which torch's FFT does not take: it computes in fp32."""
    _, _, out, tgt = _random_pair(4, shape=(2, 8, 6))
    half = dagan_freq(out.to(torch.bfloat16), tgt.to(torch.bfloat16))
    assert half.dtype == torch.float32
    magnitudes = [magnitude(x.to(torch.bfloat16)).double() for x in (out, tgt)]  # |x| as bf16 gives it
    assert half.item() == pytest.approx(dagan_freq(*magnitudes).item(), rel=1e-5)


# -- VGG --------------------------------------------------------------------------------------------


def _resize_bilinear_half_pixel(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (H, W) to (size, size), half-pixel centres, edge-clamped (no antialias)."""

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    r0, r1, wr = axis(img.shape[0])
    c0, c1, wc = axis(img.shape[1])
    rows = img[r0] * (1 - wr)[:, None] + img[r1] * wr[:, None]
    return rows[:, c0] * (1 - wc)[None, :] + rows[:, c1] * wc[None, :]


def _dagan_vgg_input_numpy(mag: np.ndarray, size: int) -> np.ndarray:
    """DAGAN's VGG input: 255 m (its (x + 1) * 127.5), resized, tiled to RGB, minus the RGB mean."""
    x = np.stack([_resize_bilinear_half_pixel(255.0 * m, size) for m in mag])
    return np.repeat(x[:, None], 3, axis=1) - np.asarray(DAGAN_VGG_MEAN).reshape(1, 3, 1, 1)


def _vgg16_pool4_by_hand(x: np.ndarray, seed: int) -> np.ndarray:
    """torchvision's vgg16 (seeded random weights) features[:24], max-pools as TF 'SAME' (pad odd sizes)."""
    from torchvision.models import vgg16

    torch.manual_seed(seed)
    layers = vgg16(weights=None).features[:24]
    assert isinstance(layers[23], torch.nn.MaxPool2d) and isinstance(layers[21], torch.nn.Conv2d)
    t = torch.from_numpy(x).float()
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, torch.nn.MaxPool2d):
                t = F.pad(t, (0, t.shape[-1] % 2, 0, t.shape[-2] % 2), value=-float("inf"))
                t = F.max_pool2d(t, 2, 2)
            else:
                t = layer(t)
    return t.numpy().astype(np.float64)


def test_vgg_input_is_dagans_preprocessing():
    mag = np.random.default_rng(2).uniform(0, 1, (2, 7, 9))
    got = dagan_vgg_input(torch.from_numpy(mag), size=12).numpy()
    np.testing.assert_allclose(got, _dagan_vgg_input_numpy(mag, 12), rtol=1e-10, atol=1e-9)
    # a white pixel is 255 minus the mean, channel by channel (RGB order)
    white = dagan_vgg_input(torch.ones(1, 4, 4), size=None)
    torch.testing.assert_close(white[0, :, 0, 0], 255 - torch.tensor(DAGAN_VGG_MEAN))
    # a channel axis of one is the same image; two channels are not magnitudes
    torch.testing.assert_close(dagan_vgg_input(torch.from_numpy(mag)[:, None], size=12).numpy(), got)
    with pytest.raises(ValueError, match=r"magnitudes \(B, H, W\) or \(B, 1, H, W\), got \(2, 2, 7, 9\)"):
        dagan_vgg_input(torch.from_numpy(mag)[:, None].expand(-1, 2, -1, -1))


def test_vgg_term_matches_torchvision_vgg16_pool4_run_by_hand():
    m_out, m_tgt, out, tgt = _random_pair(3, shape=(2, 24, 20))
    size, seed = 36, 5  # 36 -> 18 -> 9 -> 5 -> 3: the odd sizes exercise TF 'SAME' pooling
    features = DAGANVGGFeatures("random", layer="pool4", size=size, seed=seed)
    assert features.backbone == "vgg16-random"
    f_out = _vgg16_pool4_by_hand(_dagan_vgg_input_numpy(m_out, size), seed)
    f_tgt = _vgg16_pool4_by_hand(_dagan_vgg_input_numpy(m_tgt, size), seed)
    assert f_out.shape == (2, 512, 3, 3)
    expected = np.mean(np.mean((f_out - f_tgt) ** 2, axis=(1, 2, 3)))
    got = dagan_vgg(out.float(), tgt.float(), features)
    assert got.item() == pytest.approx(expected, rel=1e-4)
    # the training modules compute it as PerceptualLoss on magnitudes: the same number
    via_perceptual = PerceptualLoss(features)(torch.from_numpy(m_out).float(), torch.from_numpy(m_tgt).float())
    assert via_perceptual.item() == pytest.approx(expected, rel=1e-4)


def test_vgg_term_defaults_gradients_and_checkpointing():
    features = DAGANVGGFeatures("random", seed=0)  # pool4 at DAGAN's 244 x 244
    out = torch.rand(1, 2, 16, 16, requires_grad=True)
    tgt = torch.rand(1, 2, 16, 16)
    assert features(torch.rand(1, 16, 16)).shape == (1, 512, 16, 16)  # 244 -> 122 -> 61 -> 31 -> 16, as in TF
    dagan_vgg(out, tgt, features).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in features.parameters())
    features.train()
    assert not features.vgg.training
    parent = torch.nn.ModuleDict({"perceptual": features, "other": torch.nn.Linear(2, 2)})
    assert all(k.startswith("other") for k in parent.state_dict())


# -- wiring ------------------------------------------------------------------------------------------


def test_dagan_experiment_trains_a_step_with_the_dagan_terms(phantom_root, tmp_path):
    from csmri.app.train import build_module, train
    from csmri.lit import precision
    from csmri.lit.adversarial import image_terms
    from tests.helpers import compose_config, tiny_dagan_overrides

    cfg = compose_config("train", tiny_dagan_overrides(phantom_root, "trainer.fast_dev_run=1"), tmp_path)
    module = build_module(cfg)
    assert isinstance(module.perceptual.extractor, DAGANVGGFeatures)
    assert module.perceptual_backbone == "vgg16-random"
    bf16 = precision.resolve_feature_precision("auto", "cpu")  # model.vgg_precision=auto: bf16 where native
    assert module.run_metadata("cpu")["perceptual_precision"] == ("bf16" if bf16 else "32")
    module.on_fit_start()  # the loss learns its precision once the device is known
    assert module.perceptual.bf16 is bf16
    assert module.normalizer.weights == {"adv": 1.0, "nmse": 15.0, "freq": 0.1, "vgg": 0.0025}
    out, tgt = torch.rand(2, 2, 8, 8), torch.rand(2, 2, 8, 8)
    terms = image_terms(out, tgt, {"nmse", "freq"})
    torch.testing.assert_close(terms["nmse"], dagan_nmse(out, tgt))
    torch.testing.assert_close(terms["freq"], dagan_freq(out, tgt))
    train(cfg)  # one training and one validation batch


def test_vgg_precision_setting_is_checked_and_reaches_the_loss(monkeypatch, tmp_path):
    from csmri.app.train import build_module
    from csmri.lit import precision
    from tests.helpers import ADVERSARIAL, compose_config

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    base = ["experiment=dagan", "data.root=unused", *ADVERSARIAL["dagan"], "model.net.perceptual.size=64"]
    for setting, expected in (("32", False), ("bf16", True), ("auto", True)):
        module = build_module(compose_config("train", [*base, f"model.vgg_precision={setting}"], tmp_path))
        module.on_fit_start()
        assert module.perceptual.bf16 is expected
        assert module.run_metadata("cpu")["perceptual_precision"] == ("bf16" if expected else "32")
    with pytest.raises(ValueError, match="vgg_precision must be one of"):
        build_module(compose_config("train", [*base, "model.vgg_precision=fp16"], tmp_path))


def test_stage2_and_joint_keep_their_vgg19_perceptual_loss(tmp_path):
    from csmri.models.vgg import VGGFeatures
    from tests.helpers import compose_config

    for experiment in ("joint", "stage2"):
        cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
        perceptual = cfg.model.net.perceptual
        assert perceptual._target_ == "csmri.models.VGGFeatures" and "arch" not in perceptual
        assert VGGFeatures.__init__.__defaults__[-1] == "vgg19"
