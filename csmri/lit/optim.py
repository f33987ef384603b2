"""Optimisers and LR schedules from ``_partial_`` configs (lightning-hydra-template style).

A module receives ``optimizer: {_target_: torch.optim.Adam, _partial_: true, lr: ..., betas: ...}`` and, optionally,
``scheduler: {_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 5, gamma: 0.5}``; both are
stored as plain dicts in the checkpoint's hyper-parameters. Schedulers step once per epoch.

Optimisers that offer a fused implementation (Adam, AdamW, SGD, ...) get ``fused=True`` unless the config sets
``fused`` itself: one kernel per step instead of a loop over parameters (PatchGAN D's 30M parameters: 23 ms vs
143 ms per Adam step on a 2-core CPU); the update is the same algorithm.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from csmri.config import instantiate_or_raise_cause, plain


def adam(lr: float, betas: Iterable[float] = (0.5, 0.999), weight_decay: float = 0.0) -> dict[str, Any]:
    """The ``_partial_`` config of ``torch.optim.Adam`` with these settings."""
    return {
        "_target_": "torch.optim.Adam",
        "_partial_": True,
        "lr": lr,
        "betas": list(betas),
        "weight_decay": weight_decay,
    }


def plain_configs(
    net: Mapping[str, Any],
    loss: Mapping[str, Any],
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any] | None,
    default_lr: float,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """A module's ``net``/``loss``/``optimizer``/``scheduler`` configs as plain dicts for its hyper-parameters
    (Adam at ``default_lr``, betas (0.5, 0.999), when ``optimizer`` is unset)."""
    optimizer = plain(optimizer) if optimizer is not None else adam(default_lr)
    return plain(net), plain(loss), optimizer, plain(scheduler) if scheduler is not None else None


def _partial(config: Mapping[str, Any], what: str) -> Any:
    if "_target_" not in config:
        raise ValueError(f"module.{what} needs a _target_ (e.g. torch.optim.Adam), got keys {sorted(config)}")
    factory = instantiate_or_raise_cause({**config, "_partial_": True})
    if not callable(factory):
        raise ValueError(f"module.{what}={dict(config)} does not build a callable")
    return factory


def _fusable(factory: Any, params: list[torch.nn.Parameter]) -> bool:
    """Whether the optimiser class takes ``fused`` and every parameter is a floating CPU/CUDA tensor."""
    cls = getattr(factory, "func", factory)
    try:
        takes_fused = "fused" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    kinds = {p.device.type for p in params}
    return (
        takes_fused
        and bool(params)
        and len(kinds) == 1
        and kinds <= {"cpu", "cuda"}
        and all(p.is_floating_point() for p in params)
    )


def build_optimizer(config: Mapping[str, Any], params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``config`` (a ``_partial_`` optimiser) applied to ``params``; fused where available (see module doc)."""
    factory = _partial(config, "optimizer")
    params = list(params)
    if "fused" not in config and _fusable(factory, params):
        return factory(params, fused=True)
    return factory(params)


def build_scheduler(
    config: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``config`` (a ``_partial_`` LR scheduler, stepped per epoch) applied to ``optimizer``; ``None`` when unset."""
    return _partial(config, "scheduler")(optimizer) if config else None
