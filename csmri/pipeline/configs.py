"""Each planned run's config composed before anything runs: a typo in a late stage's overrides (an unknown key, a
missing config group option) is a one-line error at once, not after the stages before it have trained."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from csmri.errors import ConfigError, user_error

CONFIGS = {"train": "train", "eval": "eval"}  # a run's command -> the csmri config its arguments override


@lru_cache(maxsize=512)
def _compose(config: str, args: tuple[str, ...]) -> None:
    from csmri.config import compose

    compose(config, list(args))


def check_configs(runner: Any, names: Iterable[str]) -> None:
    """Compose ``csmri/conf/train.yaml`` (or ``eval.yaml``) with the arguments of every enabled run of ``names``
    (cached per process); a user mistake becomes a :class:`ConfigError` naming the run."""
    for name in names:
        run = runner.runs[name]
        if not runner.enabled(name):
            continue
        try:
            _compose(CONFIGS[run.command], tuple(runner.recorded_args(name)))
        except Exception as err:
            user = user_error(err)
            if user is None:
                raise
            raise ConfigError(f"run {name}: {user.message}", user.hint) from err
