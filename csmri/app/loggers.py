"""The loggers of a training run (CSV, W&B, ``logger=...``) and how a W&B run is named, tagged and grouped so a
dashboard can compare runs without opening their configs: ``<experiment>-<key overrides>-s<seed>``; tags experiment,
``profile:<name>``, ``commit:<hash>``, ``dirty``; group = the pipeline (``$CSMRI_PIPELINE``) or the sweep."""

from __future__ import annotations

import os
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from csmri.config import override_key
from csmri.lit.checkpoints import read_checkpoint
from csmri.run_info import git_state, job_overrides

# overrides that say where or how a run runs, not what it computes: left out of W&B run names
NAME_SKIPS = (
    "experiment",
    "tags",
    "seed",
    "ckpt_path",
    "skip_finished",
    "data.root",
    "data.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
)
NAME_SKIP_GROUPS = ("hydra", "paths", "logger", "callbacks", "debug", "sweep")
PIPELINE_ENV, PROFILE_ENV = "CSMRI_PIPELINE", "CSMRI_PROFILE"  # set by a pipeline that runs `csmri train`


def _experiment(cfg: DictConfig) -> str:
    return "run" if OmegaConf.is_missing(cfg, "experiment_name") else str(cfg.get("experiment_name") or "run")


def wandb_run_name(cfg: DictConfig, overrides: list[str] | None) -> str:
    """``<experiment>-<key overrides>-s<seed>``, e.g. ``stage2-alpha_target=0.05-s1``: the job's command-line
    overrides as ``<last key>=<value>``, without paths and those of :data:`NAME_SKIPS`/:data:`NAME_SKIP_GROUPS`."""
    parts = [_experiment(cfg)]
    for override in overrides or []:
        key, value = override_key(override), override.partition("=")[2]
        if key in NAME_SKIPS or key.split(".")[0] in NAME_SKIP_GROUPS or "/" in value:
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    suffix = f"-s{cfg.seed}"
    return "-".join(parts)[: 128 - len(suffix)] + suffix  # W&B shows 128 characters; the seed always


def wandb_group(cfg: DictConfig) -> str:
    """``$CSMRI_PIPELINE`` (a pipeline's name), else a multirun's ``<experiment>-<sweep>-<sweep folder>`` (one group
    per sweep), else the experiment."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if os.environ.get(PIPELINE_ENV):
        return os.environ[PIPELINE_ENV]
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra_cfg = HydraConfig.get()
        sweep = hydra_cfg.runtime.choices.get("sweep") or "sweep"
        return f"{_experiment(cfg)}-{sweep}-{Path(hydra_cfg.sweep.dir).name}"
    return _experiment(cfg)


def wandb_tags(cfg: DictConfig, extra: list[str] | None) -> list[str]:
    """The experiment, ``profile:<name>`` (``$CSMRI_PROFILE``), ``commit:<hash>`` and ``dirty`` (uncommitted changes),
    then the configured ``tags``."""
    git = git_state()
    tags = [_experiment(cfg)]
    if os.environ.get(PROFILE_ENV):
        tags.append(f"profile:{os.environ[PROFILE_ENV]}")
    tags.append(f"commit:{str(git['commit'])[:10]}")
    if git["dirty"]:
        tags.append("dirty")
    return list(dict.fromkeys([*tags, *(str(t) for t in extra or [])]))


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The configured loggers; a resumed run (``ckpt_path``) continues the W&B run stored in its checkpoint.

    A W&B run is named, tagged and grouped by :func:`wandb_run_name`, :func:`wandb_tags` and :func:`wandb_group`
    unless ``logger.wandb.name`` / ``group`` are set; ``logger.wandb.tags`` are added to the automatic tags."""
    configs = OmegaConf.to_container(cfg.get("logger") or OmegaConf.create(), resolve=True)
    wandb_cfg = configs.get("wandb")
    if wandb_cfg:
        if wandb_cfg.get("name") is None:
            wandb_cfg["name"] = wandb_run_name(cfg, job_overrides())
        if wandb_cfg.get("group") is None:
            wandb_cfg["group"] = wandb_group(cfg)
        wandb_cfg["tags"] = wandb_tags(cfg, wandb_cfg.get("tags"))
    if wandb_cfg and cfg.get("ckpt_path"):
        run_id = read_checkpoint(cfg.ckpt_path, "ckpt_path", mmap=True).get("wandb_run_id")
        if run_id:
            wandb_cfg.update(id=run_id, resume="allow")
    loggers = [instantiate(c, _convert_="all") for c in configs.values() if c is not None]
    for logger in loggers:
        if isinstance(logger, WandbLogger):  # Lightning passes anonymous=None, which W&B warns is deprecated
            logger._wandb_init.pop("anonymous", None)
    return loggers
