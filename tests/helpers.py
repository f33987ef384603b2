"""Test helpers: compose the project's Hydra configs outside a Hydra app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from csmri.config import compose, config_dir


def compose_config(name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with ``overrides``; ``paths.output_dir`` set to ``output_dir``."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    return compose(name, [*overrides, *extra])


def experiments() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


# the csmri command line as a subprocess (a fresh interpreter, like a user's shell), quiet and offline
CSMRI = [sys.executable, "-m", "csmri"]
SUBPROCESS_ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "CSMRI_OFFLINE": "1"}  # no downloads


def run_csmri(*args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``csmri <args>`` in a subprocess; ``env`` entries override :data:`SUBPROCESS_ENV`."""
    return subprocess.run(
        [*CSMRI, *args], capture_output=True, text=True, timeout=timeout, env={**SUBPROCESS_ENV, **env}
    )


def train_best_checkpoint(output_dir: Path, overrides: list[str]) -> Path:
    """Run ``csmri train`` in-process with ``overrides`` into ``output_dir``; its ``checkpoints/best.ckpt``."""
    from csmri.app.train import train

    train(compose_config("train", overrides, output_dir))
    return output_dir / "checkpoints" / "best.ckpt"
