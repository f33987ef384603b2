"""Every csmri exception class, and how the ``csmri`` command reports the ones a user can fix.

User-facing errors are mistakes a user can fix (a wrong path, a missing config value, a bad input file).
The ``csmri`` command (:mod:`csmri.app.cli`) prints them as one line plus a hint and exits with status 2;
``HYDRA_FULL_ERROR=1`` or ``CSMRI_DEBUG=1`` shows the full traceback instead. Every other exception is a bug
and keeps its traceback. The subclasses also derive from the builtin they replace (``ValueError``,
``FileNotFoundError``, ...), so ``except ValueError`` written against earlier versions still catches them.

This module imports nothing from csmri, so that any module may import it.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
from collections.abc import Iterable
from pathlib import Path

from hydra.errors import ConfigCompositionException

__all__ = [
    "BadInputError",
    "CheckpointError",
    "ConfigError",
    "CsmriError",
    "DataError",
    "DatasetFolderError",
    "DatasetNotFoundError",
    "InferenceError",
    "MissingPackageError",
    "MissingValueError",
    "NonFiniteLossError",
    "OutputError",
    "PerceptualWeightsUnavailable",
    "RunTerminated",
    "TrainingError",
    "UnknownKeyError",
    "debug_enabled",
    "did_you_mean",
    "format_error",
    "user_error",
]

DEBUG_ENV = ("CSMRI_DEBUG", "HYDRA_FULL_ERROR")
EXIT_USER_ERROR = 2

# what to set for the required (???) values of the shipped configs
MISSING_HINTS = {
    "model.net.recon_ckpt": (
        "a stage-1 checkpoint, e.g. model.net.recon_ckpt=outputs/stage1/<run>/checkpoints/best.ckpt"
    ),
    "data.root": "your dataset folder, e.g. data.root=DIR (a prepared dataset, or raw scans with data=folder)",
    "experiment_name": "an experiment, e.g. experiment=stage1 (csmri/conf/experiment/*.yaml)",
}


class CsmriError(Exception):
    """A mistake the user can fix; ``hint`` says how (printed on its own line)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message}; {hint}" if hint else message)
        self.message = message
        self.hint = hint


class ConfigError(CsmriError, ValueError):
    """A configuration value that cannot work (unknown key or method, inconsistent settings)."""


class UnknownKeyError(ConfigError, ConfigCompositionException):
    """An override of a key the config does not have, with the nearest key it has
    (:func:`csmri.config.closest_key`); still a Hydra ``ConfigCompositionException`` for code that catches Hydra's
    error."""


class MissingValueError(ConfigError):
    """A required config value (``???``) was not set."""

    def __init__(self, key: str, hint: str | None = None) -> None:
        self.key = key
        what = hint or MISSING_HINTS.get(key) or f"a value on the command line, e.g. {key}=..."
        super().__init__(f"missing required value `{key}`: set it to {what}")


class DataError(CsmriError, ValueError):
    """A dataset or data folder that cannot be used as configured."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """No prepared dataset (or file of one) where the config points."""


class DatasetFolderError(DataError, FileExistsError):
    """A folder that a data source refuses to write into (it holds something else)."""


class CheckpointError(CsmriError, FileNotFoundError, ValueError):
    """A checkpoint that is missing or unreadable."""


class OutputError(CsmriError, OSError):
    """An output file or folder that cannot be written (unwritable, disk full, a file or folder in the way)."""


class MissingPackageError(CsmriError, ImportError):
    """An optional package a feature needs is not installed; the hint says what to ``pip install``."""


class TrainingError(CsmriError, RuntimeError):
    """Training cannot go on (a non-finite loss, an unwritable output folder)."""


class NonFiniteLossError(TrainingError):
    """A training loss became NaN or infinite."""


class InferenceError(DataError):
    """A checkpoint or input that cannot be reconstructed; the message names it, the hint says what to do.

    A :class:`DataError` (so a ``ValueError``): raised by ``csmri reconstruct`` / ``csmri export`` and
    :func:`csmri.load`, it is printed by the ``csmri`` command's one top-level handler as
    ``csmri <command>: error: <message>`` plus ``  hint: <hint>``, without a traceback, exit status 2.
    """


class BadInputError(ValueError):
    """A raw input file (or folder) that cannot be used; ``path`` names it and the message starts with it.

    Raised by the scan readers (:mod:`csmri.data.scan_files`) and the folder source; :func:`user_error` turns it into
    a :class:`DataError`. ``hint`` (optional) says what to do when the usual advice (check the file, or skip it) does
    not fit.
    """

    def __init__(self, path: str | Path, reason: str, hint: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"{path}: {reason}")


class PerceptualWeightsUnavailable(RuntimeError):
    """ImageNet VGG weights were requested but cannot be loaded (offline and not cached)."""


class RunTerminated(KeyboardInterrupt):
    """SIGTERM arrived while no Trainer was fitting: the run stops as on Ctrl-C (``signum``: the signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def debug_enabled() -> bool:
    """True when ``CSMRI_DEBUG`` or ``HYDRA_FULL_ERROR`` asks for full tracebacks."""
    return any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_ENV)


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean `x`?)`` for the closest candidate, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean `{prefix}{close[0]}`?)" if close else ""


def user_error(err: BaseException) -> CsmriError | None:
    """``err`` as a :class:`CsmriError` when it is a user mistake csmri recognises, else ``None``.

    Besides csmri's own errors: bad input files (:class:`BadInputError`), missing
    ``???`` config values, overrides Hydra cannot parse and Hydra's composition errors (an unknown config group
    or key).
    """
    if isinstance(err, CsmriError):
        return err
    cause, seen = err.__cause__ or err.__context__, 0
    while cause is not None and seen < 10:  # e.g. a resolver's or target's error wrapped by OmegaConf/Hydra
        if isinstance(cause, CsmriError):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    if isinstance(err, BadInputError):
        return DataError(str(err), err.hint or "check the file, or skip bad inputs with data.source.skip_bad=true")
    try:
        from hydra.errors import MissingConfigException, OverrideParseException
        from omegaconf.errors import MissingMandatoryValue
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if isinstance(err, MissingMandatoryValue):
        key = getattr(err, "full_key", "") or ""
        return MissingValueError(key) if key else ConfigError(str(err).splitlines()[0])
    if isinstance(err, OverrideParseException):  # a command-line override Hydra cannot parse
        return ConfigError(
            f"cannot parse the override `{err.override}` ({str(err).splitlines()[0]})",
            "quote values with special characters, e.g. 'key=\"(a|b)\"' "
            "(https://hydra.cc/docs/advanced/override_grammar/basic)",
        )
    if isinstance(err, ConfigCompositionException | MissingConfigException):
        unknown = re.match(r"Could not override '([^']+)'", str(err))
        cause = str(err.__cause__ or "")
        typed = re.match(r"Key '[^']+' not in '(\w+)'", cause)  # a key a structured (typed) config does not declare
        if unknown and ("not in struct" in cause or typed):  # Hydra's advice would be to add the key
            key = unknown.group(1)
            hint = f"check its spelling against the configs in csmri/conf (+{key}=... adds a new key on purpose)"
            if typed:
                hint = f"`{key.rsplit('.', 1)[0]}` is a typed config ({typed.group(1)}): check the key's spelling"
            return ConfigError(f"unknown config key `{key}`", hint)
        wrong_type = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", cause)
        key = re.search(r"full_key: (\S+)", cause)
        if wrong_type and key:  # a typed config's value of the wrong type
            return ConfigError(
                f"`{key.group(1)}` must be a {wrong_type.group(2).lower()}, got {wrong_type.group(1)!r}",
                "fix the value on the command line or in your config file",
            )
        text = str(err).split("Config search path:")[0]  # keep e.g. the available options, not the search path
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return ConfigError(lines[0] if lines else type(err).__name__, " ".join(lines[1:]))
    return None


def format_error(err: CsmriError, prog: str = "csmri") -> str:
    """``csmri: error: <message>`` and, when there is one, ``  hint: <hint>`` on the next line (each one line, even
    when the text quotes a library's multi-line message)."""
    text = f"{prog}: error: {_one_line(err.message)}"
    if err.hint:
        text += f"\n  hint: {_one_line(err.hint)}"
    return text


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def path_hint(path: str | Path) -> str:
    """The nearest existing parent of ``path`` (to tell the user where the path stops existing)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)
