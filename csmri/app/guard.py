"""Turning user mistakes into one line: the ``csmri`` command's top-level error handling.

:func:`report` prints a :class:`csmri.errors.CsmriError` (or an error :func:`csmri.errors.user_error`
recognises) as ``csmri: error: ...`` plus a hint; :func:`guarded` does so inside a ``@hydra.main`` function,
where Hydra would otherwise print its own traceback. ``CSMRI_DEBUG=1``/``HYDRA_FULL_ERROR=1`` keep tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from csmri.errors import EXIT_USER_ERROR, debug_enabled, format_error, user_error

T = TypeVar("T")


def report(err: BaseException, prog: str = "csmri") -> int | None:
    """Print ``err`` as ``<prog>: error: ...`` (+ a hint line) when it is a user mistake and return exit status 2;
    ``None`` (print nothing) for anything else, or when ``CSMRI_DEBUG``/``HYDRA_FULL_ERROR`` asks for tracebacks."""
    user = user_error(err)
    if user is None or debug_enabled():
        return None
    print(format_error(user, prog), file=sys.stderr)
    return EXIT_USER_ERROR


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def guarded(task: Callable[[Any], T], cfg: Any) -> T:
    """``task(cfg)`` inside a Hydra app; a user mistake ends the process with one line and status 2.

    In a multirun the error is re-raised (Hydra records the failed job and the sweep decides what to do).
    """
    try:
        return task(cfg)
    except Exception as err:
        if _in_multirun():
            raise
        status = report(err)
        if status is None:
            raise
        raise SystemExit(status) from None
