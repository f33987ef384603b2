"""Precision policy and what stays exact under bf16-mixed: DC, the lambda = 0 gate, state dicts.

Masks are not tested here: drawing them uses no op on autocast's lower-precision lists (``exp``, ``multinomial``,
``scatter``; no convolution or matmul), so autocast cannot change them. The masks a real ``Trainer.fit`` hands to its
steps are pinned in tests/data/test_datamodule.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from csmri.lit import precision
from csmri.models import RecNet, UNet
from csmri.models.refinement import GatedRefinement
from csmri.physics import channels_to_complex, complex_to_channels, fft2c, undersample, zero_filled
from csmri.physics.mask import gaussian_line_mask

BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize(
    ("flags", "auto", "auto_wide", "explicit_bf16_allowed"),
    [
        ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bf16-mixed", "bf16-mixed", True),  # AMX: faster
        ({"avx512f", "avx512_bf16"}, "32-true", "bf16-mixed", True),  # native bf16: faster for wide convs only
        ({"avx2"}, "32-true", "32-true", False),  # emulated bf16
    ],
)
def test_auto_picks_bf16_only_where_it_is_faster(monkeypatch, flags, auto, auto_wide, explicit_bf16_allowed):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision("auto", "cpu") == auto
    assert precision.resolve_precision("auto", "cpu", wide=True) == auto_wide
    assert precision.resolve_precision("32-true", "cpu") == "32-true"
    if explicit_bf16_allowed:
        assert precision.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    else:
        with pytest.raises(ValueError, match="no native bf16 support.*trainer.precision=32-true"):
            precision.resolve_precision("bf16-mixed", "cpu")


@pytest.mark.parametrize(
    ("flags", "setting", "bf16"),
    [
        ({"avx512f", "avx512_bf16"}, "auto", True),  # native bf16: the frozen VGG runs in bf16
        ({"avx512f", "avx512_bf16"}, "32", False),
        ({"avx512f", "avx512_bf16"}, "bf16", True),
        ({"avx2"}, "auto", False),  # emulated bf16 would be ~10x slower
        ({"avx2"}, "32", False),
    ],
)
def test_feature_precision_follows_native_bf16(monkeypatch, flags, setting, bf16):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_feature_precision(setting, "cpu") is bf16
    if setting != "bf16":
        assert precision.resolve_feature_precision(setting, "mps") is False  # devices we know nothing of: fp32


def test_feature_precision_refuses_unknown_settings_and_emulated_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.raises(ValueError, match="no native bf16 support.*vgg_precision=auto or 32"):
        precision.resolve_feature_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="must be one of auto, 32, bf16, got 'fp16'"):
        precision.resolve_feature_precision("fp16", "cpu")


def _measured(size=32, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(batch, size, size, dtype=torch.complex64, generator=g)
    mask = gaussian_line_mask(batch, (size, size), acceleration=4, generator=g)
    kspace = undersample(target, mask)
    return kspace, mask, zero_filled(kspace)


def test_data_consistency_keeps_measured_lines_exact_under_bf16():
    kspace, mask, x_u = _measured()
    net = RecNet(nf=8).to(memory_format=torch.channels_last)
    with torch.no_grad(), BF16:
        out = net(complex_to_channels(x_u), kspace, mask)
    assert out.dtype == torch.float32
    k_out = fft2c(channels_to_complex(out))
    sampled = mask.bool()
    # the last DC put the measured samples back in fp32/complex64: equal up to one FFT round trip
    torch.testing.assert_close(k_out[sampled], kspace[sampled], rtol=1e-5, atol=1e-5 * kspace.abs().max().item())


def test_gate_at_zero_returns_r_bit_exactly_under_bf16():
    _, _, x_u = _measured()
    base = complex_to_channels(x_u)
    refinement = GatedRefinement(UNet(in_channels=2, out_channels=2, features=[4, 8, 8]), gate_init=0.0)
    refinement.to(memory_format=torch.channels_last)
    with torch.no_grad(), BF16:
        refined, x_v = refinement(base)
    assert x_v.dtype == torch.bfloat16  # V really ran in bf16
    assert torch.equal(refined, base)


def test_channels_last_state_dict_loads_into_a_plain_network_and_back():
    kspace, mask, x_u = _measured()
    fast = RecNet(nf=8).to(memory_format=torch.channels_last)
    assert fast.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    plain_net = RecNet(nf=8)
    plain_net.load_state_dict(fast.state_dict())
    again = RecNet(nf=8).to(memory_format=torch.channels_last)
    again.load_state_dict(plain_net.state_dict())
    x = complex_to_channels(x_u)
    with torch.no_grad():
        torch.testing.assert_close(plain_net(x, kspace, mask), fast(x, kspace, mask), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(again(x, kspace, mask), fast(x, kspace, mask), rtol=0, atol=0)


def test_training_run_records_its_precision(stage1_ckpt):
    info = json.loads((stage1_ckpt.parent.parent / "run_info.json").read_text())
    assert info["precision"] == precision.resolve_precision("auto", "auto")
