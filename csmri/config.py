"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


def config_dir() -> Path:
    """The repository's ``conf/`` folder; a clear error when csmri was installed without it."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"csmri's Hydra configs were not found at {CONFIG_DIR}; install csmri from a source checkout "
            "with `pip install -e .` (or `make venv`) so that conf/ sits next to the package"
        )
    return CONFIG_DIR


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set, else ``online`` when W&B credentials exist, else ``offline``.

    Offline runs never touch the network; ``make sync-wandb`` uploads them later.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def register_resolvers() -> None:
    """Register csmri's resolvers (idempotent)."""
    if not OmegaConf.has_resolver("csmri.wandb_mode"):
        OmegaConf.register_new_resolver("csmri.wandb_mode", wandb_mode)


register_resolvers()
