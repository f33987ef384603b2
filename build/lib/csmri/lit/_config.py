"""Helpers shared by the LightningModules for nested network configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from csmri.config import instantiate_or_raise_cause


def build(config: Mapping[str, Any], what: str) -> nn.Module:
    """Instantiate a ``{_target_: ..., **kwargs}`` config; errors name ``what`` was being built."""
    if "_target_" not in config:
        raise ValueError(f"{what} config needs a _target_, got keys {sorted(config)}")
    try:
        return instantiate_or_raise_cause(config)
    except Exception as err:  # say which config failed; the target's own error stays the cause
        raise ValueError(f"could not build {what} from {config}: {err}") from err
