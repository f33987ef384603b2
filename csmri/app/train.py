"""`csmri train` / `python -m csmri train`: compose a Hydra config and fit one LightningModule.

Every run directory (``hydra.run.dir``) holds ``.hydra/config.yaml`` (the resolved config),
``run_info.json`` (git state, seed, package versions, timing, outcome, best checkpoint, final metrics),
``checkpoints/{best,last}.ckpt``, ``csv/metrics.csv`` and, with W&B, ``wandb/``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from csmri.app.guard import guarded
from csmri.app.loggers import build_loggers
from csmri.app.quiet import quiet_third_party
from csmri.app.trainer_checks import (
    check_accelerator,
    check_trainer_keys,
    check_trainer_values,
    instantiation_error,
    trainer_arguments,
    trainer_error,
)
from csmri.config import CONFIG_SEARCH_PATH, check_no_missing, instantiate_or_raise_cause
from csmri.errors import ConfigError, TrainingError, user_error
from csmri.lit.checkpoints import AtomicCheckpointIO, refuse_inference_only_resume
from csmri.lit.precision import configure_matmul, resolve_precision
from csmri.run_info import (
    SIGNAL_EXIT,
    RunInfo,
    RunTerminated,
    interruption,
    job_overrides,
    overrides_change,
    read_run_info,
    resume_record,
    run_outcome,
)

log = logging.getLogger(__name__)


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    configs = cfg.get("callbacks") or {}
    return [instantiate(c) for c in configs.values() if c is not None]


def build_trainer(
    cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger], module: L.LightningModule | None = None
) -> L.Trainer:
    """The configured Trainer with ``trainer.precision`` resolved for ``module`` (``auto`` -> see
    :mod:`csmri.lit.precision`: modules of VGG-width networks set ``wide_convolutions``)."""
    check_trainer_keys(cfg.trainer)
    check_trainer_values(cfg.trainer)
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    check_accelerator(accelerator)
    precision = resolve_precision(cfg.trainer.precision, accelerator, wide=getattr(module, "wide_convolutions", False))
    configure_matmul(precision, accelerator)
    plugins = list(cfg.trainer.get("plugins") or []) + [AtomicCheckpointIO()]
    arguments = trainer_arguments(cfg.trainer)
    arguments.pop("precision", None)
    try:
        return instantiate(
            arguments, callbacks=callbacks, logger=loggers or False, precision=precision, plugins=plugins
        )
    except InstantiationException as err:
        raise trainer_error(err.__cause__ or err) from err


def check_output_dir(path: str) -> None:
    """Create the run folder and make sure files can be written into it, before any work starts."""
    from pathlib import Path

    folder = Path(path)
    probe = folder / ".csmri_write_test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise TrainingError(
            f"cannot write into the run folder {folder}: {err.strerror or err}",
            "choose a writable folder with hydra.run.dir=DIR (or paths.log_dir=DIR)",
        ) from err


def build_module(cfg: DictConfig, datamodule: L.LightningDataModule | None = None) -> L.LightningModule:
    """The LightningModule ``cfg.model`` declares (``csmri/conf/model/<name>.yaml``).

    A model config with ``image_size: null`` (networks whose shape follows the images, e.g. DAGAN's) gets the
    training images' height from ``datamodule`` (built from ``cfg.data`` when not given): read from the prepared
    dataset's meta.json, else the data source's configured size.
    """
    model = cfg.model
    if "image_size" in model and model.image_size is None:
        datamodule = datamodule if datamodule is not None else instantiate(cfg.data)
        return instantiate_or_raise_cause(model, image_size=datamodule.expected_image_size())
    return instantiate_or_raise_cause(model)


def _float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if torch.as_tensor(v).numel() == 1}


def finished_score(output_dir: str, overrides: list[str] | None = None) -> float | None:
    """The recorded score of a finished run in ``output_dir`` (NaN if it recorded none), else ``None``.

    With ``overrides`` (this job's), a finished run recorded with other overrides is an error, not a skip: its
    folder holds another setting (e.g. a sweep's values or ``train_overrides`` changed since), which skipping would
    report under this one's name."""
    info = read_run_info(output_dir)
    if info.get("status") != "finished" or not (Path(output_dir) / "checkpoints" / "last.ckpt").is_file():
        return None
    change = overrides_change(info, overrides) if overrides is not None else None
    if change:
        raise ConfigError(
            f"skip_finished: {output_dir} holds a finished run with other overrides ({change})",
            "give this run its own folder (hydra.run.dir / hydra.sweep.dir, or the study's results and work_dir), "
            "or remove that folder to train it again",
        )
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
    """Fit ``cfg.model`` on ``cfg.data``; returns the monitored metric's best value (for sweepers).

    ``run_info.json`` ends with ``status`` ``finished``, ``interrupted`` (SIGINT/Ctrl-C or SIGTERM, named in
    ``error``; the process exits with 130 or 143) or ``failed`` (and ``error``, one line), ``best_checkpoint`` and
    ``best_score`` (the monitored metric); both are also printed at the end. A run resumed with ``ckpt_path``
    records ``resumed_from`` (the checkpoint, the run folder that wrote it and that run's own ``resumed_from``).
    """
    quiet_third_party()
    output_dir = cfg.paths.output_dir
    overrides = job_overrides()
    finished = finished_score(output_dir, overrides) if cfg.get("skip_finished") else None
    if finished is not None:
        log.info("%s finished earlier (skip_finished=true): not trained again", output_dir)
        return finished
    check_output_dir(output_dir)
    experiment = cfg.get("experiment_name") if not OmegaConf.is_missing(cfg, "experiment_name") else None
    extra = {"experiment": experiment, "overrides": overrides, **resume_record(cfg.get("ckpt_path"))}
    info = RunInfo(output_dir, cfg.seed, **extra) if rank_zero_only.rank == 0 else None
    with _sigterm_stops_run() as received:
        try:
            check_no_missing(cfg)
            check_launch(cfg)
            if cfg.get("ckpt_path"):
                refuse_inference_only_resume(cfg.ckpt_path)
            result = _fit(cfg, info)
        except BaseException as err:
            user = instantiation_error(err, cfg) if isinstance(err, Exception) and user_error(err) is None else None
            if user is not None:  # one line naming the key, not a traceback through Hydra and Lightning
                if info is not None:
                    info.update(status="failed", error=user.message)
                raise user from err
            if received and interruption(err) is None:
                # the signal's exception was raised inside a library that turned it into another error (e.g. Hydra
                # instantiating the Trainer): the run was still stopped by the signal
                err = RunTerminated(received[0])
            status, reason = run_outcome(err)
            if info is not None:
                info.record_failure(err)
            if status == "interrupted":  # Lightning exits with 1 (Ctrl-C) or 0 (SIGTERM); shells expect 128 + signal
                if info is not None:
                    print(f"run interrupted by {reason}: {output_dir}")
                raise SystemExit(SIGNAL_EXIT.get(str(interruption(err)), 130)) from None
            raise
    return result


@contextmanager
def _sigterm_stops_run() -> Iterator[list[int]]:
    """SIGTERM stops the run as Ctrl-C does (:class:`csmri.run_info.RunTerminated`), so ``run_info.json`` records
    ``interrupted``; while Lightning fits, its own handler (which calls this one too) stops at the end of the batch
    instead and raises ``SIGTERMException``. Yields the signals received (so a run whose signal surfaced as another
    error is still recorded as interrupted). Outside the main thread signals cannot be handled: nothing changes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if signal.getsignal(signal.SIGTERM) is handler:  # not called by Lightning's handler, which composes this one
            raise RunTerminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit(cfg: DictConfig, info: RunInfo | None) -> float | None:
    L.seed_everything(cfg.seed, workers=True)
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, build_callbacks(cfg), loggers, module)
    metadata = {
        "precision": str(trainer.precision),
        "acquisition": getattr(datamodule, "acquisition", None),  # mask type, acceleration, ... (csmri reconstruct)
        **(module.run_metadata(trainer.strategy.root_device.type) if hasattr(module, "run_metadata") else {}),
    }
    if info is not None:
        info.update(**metadata)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    trainer.callbacks.append(LogConfigAtTrainStart({"config": resolved, **metadata}))

    status, error = "failed", None
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        status = "interrupted" if trainer.interrupted else "finished"
    except BaseException as err:
        status, error = run_outcome(err)
        raise
    finally:
        best, score = best_checkpoint(trainer)
        metrics = _float_metrics(trainer.callback_metrics)
        if info is not None:
            extra = {"error": error} if error else {}
            info.update(
                status=status, best_checkpoint=best, best_score=score, monitor=cfg.monitor.metric,
                monitor_mode=cfg.monitor.mode, final_metrics=metrics, **extra,
            )  # fmt: skip
            if best:
                print(f"best checkpoint: {best} ({cfg.monitor.metric} = {score:.6g})")
            if status != "interrupted":  # train() says what interrupted it
                print(f"run {status}: {cfg.paths.output_dir}")
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            run_dir = wandb.run.dir if wandb.run is not None else None
            wandb.finish(exit_code=0 if status == "finished" else 1)
            if status == "failed" and trainer.global_step == 0 and run_dir and "offline-run-" in run_dir:
                import shutil
                from pathlib import Path

                shutil.rmtree(Path(run_dir).parent, ignore_errors=True)  # no W&B run for a run that never trained
    return score if score is not None else metrics.get(cfg.monitor.metric)


class LogConfigAtTrainStart(L.Callback):
    """Logs the resolved config once training starts, so a run that fails while preparing data creates
    no W&B run (the W&B logger creates its run on first use)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.params)


def best_checkpoint(trainer: L.Trainer) -> tuple[str | None, float | None]:
    """The best checkpoint path and its monitored score (``None`` when no checkpoint was selected)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") or None
    score = getattr(callback, "best_model_score", None)
    return path, (float(score) if score is not None and path else None)


@hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return guarded(train, cfg)


if __name__ == "__main__":
    main()
