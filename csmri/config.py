"""Where the Hydra configs live, and the OmegaConf resolvers they use."""

from __future__ import annotations

import json
import netrc
import os
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
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


def image_size(root: str, fallback: int | None = None) -> int:
    """Image size (H) of the prepared dataset at ``root`` (its meta.json), else ``fallback``.

    Lets size-dependent networks (DAGAN) follow the data: ``${csmri.image_size:${data.root},256}``.
    """
    meta = Path(root) / "meta.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["size"][0])
    if fallback is None:
        raise ValueError(f"no dataset at {root} to read the image size from; set the size explicitly")
    return int(fallback)


def instantiate_or_raise_cause(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises the target's own error (e.g. a ValueError with advice)
    instead of Hydra's generic ``InstantiationException`` wrapper."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is None:
            raise
        raise err.__cause__  # noqa: B904 (the target's own error and its chain are what users need)


def register_resolvers() -> None:
    """Register csmri's resolvers (idempotent)."""
    for name, resolver in (("csmri.wandb_mode", wandb_mode), ("csmri.image_size", image_size)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()
