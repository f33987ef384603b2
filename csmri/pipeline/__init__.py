"""Declared pipelines: stages of ``csmri train`` runs and an evaluation, wired by references, run by one runner.

:func:`load_pipeline` composes a pipeline file (:mod:`csmri.pipeline.spec` describes its format) with ``key=value``
overrides; :func:`open_pipeline` returns its :class:`~csmri.pipeline.runner.Runner`, which resolves the graph, names
each run by a hash of its settings and inputs, skips what is done, re-runs what is stale and launches the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from csmri.errors import ConfigError
from csmri.pipeline.runner import Runner
from csmri.pipeline.spec import Ref, Run, declared_runs, import_hooks, order, parse_ref

__all__ = [
    "import_hooks",
    "Ref",
    "Run",
    "Runner",
    "declared_runs",
    "load_pipeline",
    "open_pipeline",
    "order",
    "parse_ref",
]


def load_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The pipeline file ``path`` composed with ``overrides`` (Hydra override grammar; a key that is not in the file
    is an error), in struct mode. A pipeline file is a config of its own folder, not of ``csmri/conf``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no pipeline file {path}")
    bad = [a for a in overrides if "=" not in a]
    if bad:
        raise ConfigError(f"expected key=value overrides, got {bad}")
    try:
        with initialize_config_dir(str(path.parent.resolve()), version_base="1.3"):
            cfg = compose(path.stem, list(overrides))
    except HydraException as err:  # a typo in a key, a malformed value
        raise ConfigError(f"bad override: {str(err).splitlines()[0]}") from err
    OmegaConf.set_struct(cfg, True)
    return cfg


def open_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> Runner:
    """The runner of pipeline file ``path`` with ``overrides``, its ``hooks`` module imported."""
    cfg = load_pipeline(path, overrides)
    return Runner(cfg, import_hooks(cfg.get("hooks"), Path(path)))
