"""Run metadata written next to every run: git state, seed, package versions, timing and outcome."""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from csmri.errors import RunTerminated

PACKAGES = (
    "csmri",
    "torch",
    "torchvision",
    "lightning",
    "hydra-core",
    "omegaconf",
    "torchmetrics",
    "wandb",
    "numpy",
    "scipy",
    "h5py",
)
REPO_DIR = Path(__file__).resolve().parents[1]


def git_state(repo: Path = REPO_DIR) -> dict[str, Any]:
    """Commit hash and whether the working tree has uncommitted changes (``unknown`` outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain").strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


RUN_INFO = "run_info.json"


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The ``run_info.json`` of ``run_dir``; ``{}`` if the run has none (not started, or not a csmri run)."""
    path = Path(run_dir) / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


# overrides that say how to run, not what is computed: a finished run is the same run without them
RUN_CONTROL_KEYS = ("ckpt_path", "skip_finished")


def job_overrides() -> list[str] | None:
    """This Hydra job's own command-line overrides (a multirun's point, not the whole sweep; no ``hydra.*`` and no
    :data:`RUN_CONTROL_KEYS`), as ``csmri train`` and ``csmri eval`` record them; ``None`` outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    from csmri.config import override_key

    if not HydraConfig.initialized():
        return None
    return [o for o in HydraConfig.get().overrides.task if override_key(o) not in RUN_CONTROL_KEYS]


def overrides_change(info: dict[str, Any], overrides: Sequence[str]) -> str | None:
    """How ``overrides`` differ from those of the run recorded in ``info`` (``"the run had [...], now [...]"``:
    the overrides only one side has), or ``None`` when they are the same or the run recorded none (runs from before
    csmri recorded them are trusted).

    ``overrides`` are a job's own, as :func:`job_overrides` records them in ``overrides``."""
    recorded = info.get("overrides")
    if recorded is None or sorted(recorded) == sorted(overrides):
        return None
    was = [o for o in recorded if o not in overrides]
    now = [o for o in overrides if o not in recorded]
    return f"the run had {was}, now {now}"


def perceptual_precision_label(recorded: str | None) -> str:
    """How a GAN run's recorded ``perceptual_precision`` (``run_info.json`` and the checkpoint: ``bf16``, ``32``,
    ``none``; absent before csmri recorded it) reads beside its backbone: ``run in bf16``, ``run in fp32`` or ``""``."""
    return {"bf16": "run in bf16", "32": "run in fp32"}.get(str(recorded), "")


def _cpu_threads() -> int:
    import torch

    return torch.get_num_threads()


class RunInfo:
    """``run_info.json`` in a run directory, rewritten whenever :meth:`update` is called."""

    def __init__(self, run_dir: str | Path, seed: int, **extra: Any) -> None:
        self.path = Path(run_dir) / RUN_INFO
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._start = time.time()
        self.data: dict[str, Any] = {
            "status": "running",
            "seed": seed,
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "cpu_threads": _cpu_threads(),  # CPU training in fp32 is reproducible for a seed only at the same count
            "git": git_state(),
            "packages": package_versions(),
            **extra,
        }
        self._write()

    def record_failure(self, err: BaseException) -> None:
        """A run still ``running`` becomes ``interrupted`` (with the signal) or ``failed`` (with the error's one
        line): see :func:`run_outcome`."""
        if self.data.get("status") == "running":
            status, reason = run_outcome(err)
            self.update(status=status, error=reason)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.data["elapsed_s"] = round(time.time() - self._start, 1)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, as shells report a signal


def interruption(err: BaseException) -> str | None:
    """The signal that stopped a run, when ``err`` is how it surfaced, else ``None``: ``SIGINT`` (Ctrl-C: a
    ``KeyboardInterrupt``, or the ``SystemExit(1)`` Lightning raises after handling one), ``SIGTERM`` (Lightning's
    ``SIGTERMException`` after its graceful stop, or :class:`RunTerminated` outside ``fit``)."""
    if isinstance(err, RunTerminated):
        return signal.Signals(err.signum).name
    if type(err).__name__ == "SIGTERMException":  # lightning.pytorch.utilities.exceptions, a SystemExit
        return "SIGTERM"
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT"
    if isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt):
        return interruption(err.__context__)  # Lightning: `except KeyboardInterrupt: ... sys.exit(1)`
    return None


def run_outcome(err: BaseException) -> tuple[str, str]:
    """``("interrupted", "SIGINT (Ctrl-C)" | "SIGTERM")`` for a run stopped by a signal, else ``("failed", <the
    error's one line>)``."""
    signame = interruption(err)
    if signame is not None:
        return "interrupted", "SIGINT (Ctrl-C)" if signame == "SIGINT" else signame
    return "failed", one_line(err)


def resume_record(ckpt_path: str | Path | None) -> dict[str, Any]:
    """``{"resumed_from": {...}}`` for a run resumed from ``ckpt_path`` (``{}`` without one): the checkpoint, the run
    folder that wrote it (``<run>/checkpoints/x.ckpt`` -> ``<run>``, else the checkpoint's folder) and, from that
    folder's ``run_info.json`` (read before a resume into the same folder replaces it), its status, start time and
    its own ``resumed_from``, so the chain of resumed runs survives in the newest run's record."""
    if not ckpt_path:
        return {}
    ckpt = Path(str(ckpt_path)).absolute()
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    record: dict[str, Any] = {"run_dir": str(run_dir), "checkpoint": str(ckpt)}
    try:
        earlier = read_run_info(run_dir)
    except (OSError, ValueError):
        earlier = {}
    for key in ("status", "started", "resumed_from"):
        if key in earlier:
            record[key if key != "status" else "run_status"] = earlier[key]
    return {"resumed_from": record}


def resume_chain(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs ``info`` was resumed from, newest first (``resumed_from`` records, each with ``run_dir`` and
    ``checkpoint``); empty for a run started afresh."""
    chain, record = [], info.get("resumed_from")
    while isinstance(record, dict) and len(chain) < 100:
        chain.append(record)
        record = record.get("resumed_from")
    return chain


def one_line(err: BaseException) -> str:
    """The error's one line for run records: the user-facing message, or ``Type: first line``."""
    from csmri.errors import user_error

    user = user_error(err)
    if user is not None:
        return user.message
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
