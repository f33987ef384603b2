"""The one owner of csmri's configuration: where the Hydra configs live (``csmri/conf``, package data found
through ``pkg://csmri.conf``), how a config is composed from Python, and the OmegaConf resolvers they use."""

from __future__ import annotations

import netrc
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from csmri.errors import ConfigError, UnknownKeyError

CONFIG_MODULE = "csmri.conf"
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_MODULE}"
CONFIG_DIR = Path(__file__).resolve().parent / "conf"


def override_key(override: str) -> str:
    """The config key a Hydra command-line override sets: ``+a.b=1``, ``~a.b`` and ``a.b=1`` all give ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def config_dir() -> Path:
    """The package's ``conf/`` folder (shipped as package data); a clear error when it is missing."""
    if not (CONFIG_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"csmri's Hydra configs were not found at {CONFIG_DIR}: the installation is incomplete; "
            "reinstall csmri (`pip install .` or `make venv`)"
        )
    return CONFIG_DIR


def compose(
    config_name: str,
    overrides: Sequence[str] = (),
    config_dirs: Sequence[str | Path] = (),
    return_hydra_config: bool = False,
) -> DictConfig:
    """Compose ``csmri/conf/<config_name>.yaml`` with Hydra ``overrides``, outside a Hydra app.

    The one way csmri composes a config from Python (tests, ``csmri data prepare``, ``csmri reproduce``).
    ``config_dirs`` are extra search-path entries (a user's own config folder), searched before the package's.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    search = ",".join(f"file://{Path(d).resolve()}" for d in config_dirs)
    extra = [f"hydra.searchpath=[{search}]"] if config_dirs else []
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        try:
            return hydra_compose(config_name, [*overrides, *extra], return_hydra_config=return_hydra_config)
        except ConfigCompositionException as err:
            unknown = re.match(r"Could not override '([^']+)'", str(err))
            if not unknown or "not in struct" not in str(err.__cause__ or ""):
                raise
            key = unknown.group(1)  # a typo of an existing key: name the nearest one (Hydra would advise +key=)
            rest = [o for o in overrides if override_key(o) != key]
            try:
                close = closest_key(key, hydra_compose(config_name, [*rest, *extra]))
            except Exception:  # another bad override as well: no suggestion
                close = None
            if close is None:
                raise
            raise UnknownKeyError(
                f"unknown config key `{key}` (did you mean `{close}`?)",
                f"{close}=... sets it; +{key}=... adds a new key on purpose",
            ) from err


def plain(config: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A plain, resolved ``dict`` copy of a (possibly OmegaConf) mapping, safe to store in checkpoints."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return {k: plain(v) if isinstance(v, Mapping | DictConfig) else v for k, v in config.items()}


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


def closest_key(key: str, cfg: DictConfig) -> str | None:
    """The dotted key of ``cfg`` nearest to the unknown ``key`` (``trainer.limit_train_batchs`` ->
    ``trainer.limit_train_batches``, ``data.batchsize`` -> ``data.batch_size``), or ``None``: first among the keys
    beside where ``key`` would be, then among all keys of ``cfg`` (``hydra.*`` left out); values are not resolved."""
    import difflib

    def keys(node: Any, prefix: str = "") -> list[str]:
        found = []
        for name in node.keys() if isinstance(node, DictConfig) else ():
            path = f"{prefix}{name}"
            if path != "hydra":
                found.append(path)
                found += keys(node._get_node(name), f"{path}.")
        return found

    every = keys(cfg)
    parent, _, leaf = key.rpartition(".")
    siblings = [k for k in every if k.rpartition(".")[0] == parent]
    close = difflib.get_close_matches(leaf, [k.rpartition(".")[2] for k in siblings], n=1, cutoff=0.7)
    if close:
        return f"{parent}.{close[0]}" if parent else close[0]
    close = difflib.get_close_matches(key, every, n=1)
    return close[0] if close else None


def check_no_missing(cfg: DictConfig) -> None:
    """Raise :class:`csmri.errors.MissingValueError` for the first required value (``???``) left unset."""
    from csmri.errors import MissingValueError

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise MissingValueError(missing[0])


def instantiate_or_raise_cause(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises the target's own error (e.g. a ValueError with advice)
    instead of Hydra's generic ``InstantiationException`` wrapper."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is None:
            raise
        raise err.__cause__  # noqa: B904 (the target's own error and its chain are what users need)


def data_source(name: str, **overrides: Any) -> Any:
    """The source of ``conf/data/<name>.yaml`` (e.g. ``folder``, ``la2018``, ``acdc``, ``fastmri_singlecoil``: a
    :class:`csmri.data.sources.folder.FolderSource`) with keyword ``overrides`` of its options: the config files are
    the one source of the presets. A name without a config, or a config without a source, is a ConfigError."""
    from hydra.errors import MissingConfigException

    try:  # only data.source is used: data.root may stay ??? (it is never resolved)
        source = compose("train", [f"data={name}"]).data.source
    except MissingConfigException as err:
        raise ConfigError(f"no data config {name!r} in csmri/conf/data") from err
    if source is None:
        raise ConfigError(f"data={name} has no source: its data.root must already hold a prepared dataset")
    return instantiate(OmegaConf.merge(source, overrides))


def sqlite_url(folder: str, name: str = "optuna.db") -> str:
    """``sqlite:///<folder>/<name>`` with ``folder`` created (SQLite cannot create it): a resumable Optuna storage."""
    path = Path(str(folder)).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / name}"


APP_GROUPS = {
    "train": ("experiment", "data", "model", "loss", "trainer", "logger", "callbacks", "debug", "sweep", "paths"),
    "eval": ("data", "paths"),
}


def config_groups(app: str) -> str:
    """The config groups ``csmri <app>`` accepts and their options, one line each (for ``--help``): the YAML files
    of ``csmri/conf/<group>`` and the structured configs registered in the group."""
    from hydra.core.config_store import ConfigStore

    lines = []
    for group in APP_GROUPS[str(app)]:
        stored = ConfigStore.instance().repo.get(group, {})
        names = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
        options = sorted(names | {name.removesuffix(".yaml") for name in stored if isinstance(name, str)})
        lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


def register_resolvers() -> None:
    """Register csmri's resolvers (idempotent)."""
    resolvers = (("csmri.wandb_mode", wandb_mode), ("csmri.sqlite", sqlite_url), ("csmri.config_groups", config_groups))
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def register_configs() -> None:
    """Register csmri's structured configs (the typed loss configs) in Hydra's ConfigStore (idempotent)."""
    from csmri.losses.config import register_configs as register_losses

    register_losses()


register_resolvers()
register_configs()
