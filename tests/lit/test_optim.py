"""Optimisers from ``_partial_`` configs: the fused implementation by default, the config's word otherwise."""

from __future__ import annotations

import pytest
import torch

from csmri.lit.optim import adam, build_optimizer


def _params():
    torch.manual_seed(0)
    return list(torch.nn.Linear(4, 3).parameters())


def test_adam_is_fused_by_default_and_steps_like_the_loop_implementation():
    fused_params, loop_params = _params(), _params()
    fused = build_optimizer(adam(1e-2), fused_params)
    loop = build_optimizer({**adam(1e-2), "fused": False}, loop_params)
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    for _ in range(3):
        for opt, params in ((fused, fused_params), (loop, loop_params)):
            for p in params:
                p.grad = torch.ones_like(p) * p.detach().sum()
            opt.step()
    for a, b in zip(fused_params, loop_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("target", ["torch.optim.RMSprop", "torch.optim.LBFGS"])
def test_optimisers_without_a_fused_version_are_built_as_configured(target):
    opt = build_optimizer({"_target_": target, "_partial_": True, "lr": 1e-3}, _params())
    assert type(opt).__name__ == target.rsplit(".", 1)[1]
    assert "fused" not in opt.defaults
