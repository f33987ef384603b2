"""`csmri train` / `python -m csmri train`: compose a Hydra config and fit one LightningModule.

Every run directory (``hydra.run.dir``) holds ``.hydra/config.yaml`` (the resolved config),
``run_info.json`` (git state, seed, package versions, timing, outcome, best checkpoint, final metrics),
``checkpoints/{best,last}.ckpt``, ``csv/metrics.csv`` and, with W&B, ``wandb/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from csmri.config import CONFIG_SEARCH_PATH, instantiate_or_raise_cause
from csmri.lit.checkpoints import read_checkpoint
from csmri.lit.precision import configure_matmul, resolve_precision
from csmri.run_info import RunInfo

log = logging.getLogger(__name__)


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The configured loggers; a resumed run (``ckpt_path``) continues the W&B run stored in its checkpoint."""
    configs = OmegaConf.to_container(cfg.get("logger") or OmegaConf.create(), resolve=True)
    wandb_cfg = configs.get("wandb")
    if wandb_cfg and cfg.get("ckpt_path"):
        run_id = read_checkpoint(cfg.ckpt_path, "ckpt_path").get("wandb_run_id")
        if run_id:
            wandb_cfg.update(id=run_id, resume="allow")
    return [instantiate(c, _convert_="all") for c in configs.values() if c is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    configs = cfg.get("callbacks") or {}
    return [instantiate(c) for c in configs.values() if c is not None]


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger]) -> L.Trainer:
    """The configured Trainer with ``trainer.precision`` resolved (``auto`` -> see :mod:`csmri.lit.precision`)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    precision = resolve_precision(cfg.trainer.precision, accelerator)
    configure_matmul(precision, accelerator)
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision)


def build_module(cfg: DictConfig) -> L.LightningModule:
    """The experiment's LightningModule with ``cfg.model`` as its ``net`` and ``cfg.loss`` as its ``loss``."""
    net = OmegaConf.to_container(cfg.model, resolve=True)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    return instantiate_or_raise_cause(cfg.module, net=net, loss=loss, _recursive_=False)


def _float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.as_tensor(v).numel() == 1}


def finished_score(output_dir: str) -> float | None:
    """The recorded score of a finished run in ``output_dir`` (NaN if it recorded none), else ``None``."""
    path = Path(output_dir) / "run_info.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    if info.get("status") != "finished" or not (Path(output_dir) / "checkpoints" / "last.ckpt").is_file():
        return None
    score = info.get("best_score")
    return float(score) if score is not None else float("nan")


def check_launch(cfg: DictConfig) -> None:
    """Refuse DDP inside a local Hydra multirun: Lightning relaunches the script for each rank, which
    conflicts with Hydra's in-process sweep. A SLURM launcher runs each sweep point as its own job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or "strategy" not in cfg.trainer:
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and "submitit" not in str(hydra_cfg.launcher.get("_target_", "")):
        raise ValueError(
            "trainer=ddp cannot run inside a local multirun (-m): Lightning relaunches each rank as a new "
            "process, which breaks Hydra's sweep. Sweep on a cluster with hydra/launcher=slurm (one job per "
            "sweep point, each using DDP), or run the sweep points one by one without -m."
        )


def train(cfg: DictConfig) -> float | None:
    """Fit ``cfg.module`` on ``cfg.data``; returns the monitored metric's best value (for sweepers)."""
    check_launch(cfg)
    output_dir = cfg.paths.output_dir
    finished = finished_score(output_dir) if cfg.get("skip_finished") else None
    if finished is not None:
        log.info("%s finished earlier (skip_finished=true): not trained again", output_dir)
        return finished
    L.seed_everything(cfg.seed, workers=True)
    info = RunInfo(output_dir, cfg.seed, experiment=cfg.experiment_name) if rank_zero_only.rank == 0 else None

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    module = build_module(cfg)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), loggers)
    metadata = {
        "precision": str(trainer.precision),
        "acquisition": getattr(datamodule, "acquisition", None),  # mask type, acceleration, ... (csmri reconstruct)
        **(module.run_metadata() if hasattr(module, "run_metadata") else {}),
    }
    if info is not None:
        info.update(**metadata)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams({"config": resolved, **metadata})

    status = "failed"
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        status = "interrupted" if trainer.interrupted else "finished"
    finally:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        metrics = _float_metrics(trainer.callback_metrics)
        if info is not None:
            score = getattr(trainer.checkpoint_callback, "best_model_score", None)
            info.update(
                status=status,
                best_checkpoint=best,
                best_score=float(score) if score is not None else None,
                final_metrics=metrics,
            )
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            wandb.finish(exit_code=0 if status == "finished" else 1)
    score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    return float(score) if score is not None else metrics.get(cfg.monitor.metric)


@hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
