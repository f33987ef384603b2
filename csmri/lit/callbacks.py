"""Training callbacks shared by every stage."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from csmri.errors import NonFiniteLossError
from csmri.lit.checkpoints import inference_checkpoint

log = logging.getLogger(__name__)


class CheckpointOnException(L.Callback):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops with an exception (crash or Ctrl-C).

    Unlike Lightning's ``OnExceptionCheckpoint`` it does not make ``fit(ckpt_path=None)`` resume
    implicitly: resuming stays explicit through ``ckpt_path``. Nothing is saved for a run that has not
    completed a training step since it (re)started, nor after a non-finite loss (the weights are no good):
    the last periodic checkpoint is then the one to resume from.
    """

    def __init__(self, dirpath: str, filename: str = "on_exception") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._start_step: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._start_step is None or trainer.global_step <= self._start_step:
            return  # failed before its first training step: nothing worth resuming from
        if isinstance(exception, NonFiniteLossError):
            return
        try:
            trainer.save_checkpoint(self.path)
        except NonFiniteLossError as err:  # TrainingHealth's last read found a non-finite loss: nothing to keep
            log.warning("training stopped by %r; no %s saved: %s", exception, self.path.name, err)
            return
        log.warning("training stopped by %r; saved %s (resume with ckpt_path=%s)", exception, self.path, self.path)


class InferenceModelCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose files are inference-only (:func:`csmri.lit.checkpoints.
    inference_checkpoint`): the networks, hyper-parameters, recorded acquisition, epoch and callback state that
    evaluation, ``csmri reconstruct``, ``csmri export`` and stage 2's ``model.net.recon_ckpt`` read, without optimiser
    states, the discriminator or the replay buffer (a stage-2 ``best.ckpt``: about 340 MB -> under 2 MB). Training
    resumes from the full ``last.ckpt`` (plain ``ModelCheckpoint``) or ``on_exception.ckpt``, never from these.

    Monitoring a metric (``best.ckpt``), its state is stored under ``ModelCheckpoint``'s key, so runs written
    before (or after) it resume alike. Without a monitor (periodic snapshots, e.g. every epoch's weights for a
    training curve) it keeps its own key: under ``ModelCheckpoint``'s it would clash with ``last.ckpt``'s callback,
    which has the same settings. With ``save_last: true`` its ``last.ckpt`` is written in full.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._writing = False
        self._full = False

    @property
    def state_key(self) -> str:
        if self.monitor is None:
            return super().state_key
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        self._full = True
        try:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        finally:
            self._full = False

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._writing = not self._full
        try:
            super()._save_checkpoint(trainer, filepath)
        finally:
            self._writing = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Lightning calls the checkpoint callbacks' hooks after the others', so everything they add is here already
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._writing:
            slim = inference_checkpoint(checkpoint)
            checkpoint.clear()
            checkpoint.update(slim)


class TrainingHealth(L.Callback):
    """Stops training at a non-finite loss and warns when a GAN's discriminator wins outright, without a
    host-device sync per step.

    The step's losses are the entries of what ``training_step`` returns whose name contains ``loss`` (Lightning's
    ``{"loss": ...}`` of automatic optimisation is reported as ``train/loss``; csmri's GAN modules return their
    detached ``train/*`` logs); a step that returns none falls back to the logged ``train/*loss*`` metrics. After
    every training step they are folded into a record of the first non-finite value per loss that stays on the
    device (no sync). That record is read, one sync, every ``check_every_n_steps`` training batches (``None``: the
    trainer's ``log_every_n_steps``, when Lightning syncs for logging anyway), at the end of every training epoch
    and of training, and before every checkpoint is written. A non-finite loss then raises
    :class:`NonFiniteLossError`; raised while a checkpoint is being assembled it also keeps that checkpoint from
    being written, so no checkpoint on disk holds the state of a run whose loss had become non-finite.
    (Checkpoints saved with ``save_weights_only=True`` skip callbacks' hooks: csmri's configs save full ones.)

    ``train/d_fake`` (D's mean probability on fakes) below ``d_fake_floor`` for ``divergence_steps`` steps in a row
    logs a warning (once per run, at the first read after it happened): the generator gets no useful gradient.
    """

    def __init__(
        self, check_every_n_steps: int | None = None, d_fake_floor: float = 1e-3, divergence_steps: int = 50
    ) -> None:
        self.every = None if check_every_n_steps is None else max(1, int(check_every_n_steps))
        self.d_fake_floor = d_fake_floor
        self.divergence_steps = divergence_steps
        self._batches = 0
        # per loss name: (global step of its first non-finite value or -1, that value), both device tensors
        self._first_bad: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._low_run: torch.Tensor | None = None  # current run of steps with D(fake) below the floor
        self._longest_low_run: torch.Tensor | None = None
        self._warned = False

    # -- per step: device-side bookkeeping only ---------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        values = self._step_values(trainer, outputs)
        step = int(trainer.global_step)
        for name, value in values.items():
            if "loss" in name:
                self._fold_loss(name, value.detach(), step)
        d_fake = values.get("train/d_fake")
        if d_fake is not None and not self._warned:
            self._fold_d_fake(d_fake.detach())
        self._batches += 1
        every = self.every or max(1, int(getattr(trainer, "log_every_n_steps", 50) or 50))
        if self._batches % every == 0:
            self.check(trainer)

    @staticmethod
    def _step_values(trainer: L.Trainer, outputs) -> dict[str, torch.Tensor]:
        """``train/<name>`` -> tensor of this step: the returned outputs, else the logged metrics (may sync)."""
        if torch.is_tensor(outputs):
            outputs = {"loss": outputs}
        values = {}
        if isinstance(outputs, Mapping):
            for key, value in outputs.items():
                if torch.is_tensor(value):
                    values[key if key.startswith("train/") else f"train/{key}"] = value
        if not any("loss" in name for name in values):
            metrics = trainer.callback_metrics
            values.update({k: v for k, v in metrics.items() if k.startswith("train/") and torch.is_tensor(v)})
        return values

    def _fold_loss(self, name: str, value: torch.Tensor, step: int) -> None:
        value = value.float().sum()  # a scalar: non-finite if any element is
        first, at = self._first_bad.get(name) or (
            torch.full((), -1, dtype=torch.long, device=value.device),
            torch.zeros((), device=value.device),
        )
        new = ~torch.isfinite(value) & (first < 0)
        self._first_bad[name] = (torch.where(new, step, first), torch.where(new, value, at))

    def _fold_d_fake(self, d_fake: torch.Tensor) -> None:
        low = d_fake.float().mean() < self.d_fake_floor
        if self._low_run is None:
            self._low_run = torch.zeros((), dtype=torch.long, device=d_fake.device)
            self._longest_low_run = torch.zeros_like(self._low_run)
        self._low_run = torch.where(low, self._low_run + 1, 0)
        self._longest_low_run = torch.maximum(self._longest_low_run, self._low_run)

    # -- the reads (one sync each) ----------------------------------------------------------------------
    def check(self, trainer: L.Trainer) -> None:
        """Raise :class:`NonFiniteLossError` if a loss was non-finite since the start; warn on GAN divergence."""
        names = list(self._first_bad)
        tensors = [self._first_bad[n][0] for n in names]
        if self._longest_low_run is not None and not self._warned:
            tensors.append(self._longest_low_run)
        read = torch.stack([t.to(tensors[0].device) for t in tensors]).tolist() if tensors else []  # the one sync
        bad = [(name, step) for name, step in zip(names, read, strict=False) if step >= 0]
        # Every process checks at the same batches; one that stopped alone would leave the others waiting in
        # their next collective for ever, so a non-finite loss on any process stops all of them.
        if _on_any_process(trainer, bool(bad)):
            if bad:
                name, step = bad[0]
                problem = f"training loss `{name}` became {float(self._first_bad[name][1])} at step {step}"
            else:
                problem = "a training loss became non-finite in another process"
            raise NonFiniteLossError(
                problem,
                "lower model.optimizer.lr or set model.grad_clip, and resume from the last checkpoint "
                f"in {Path(trainer.default_root_dir)}/checkpoints or the run's checkpoints/ folder "
                "(ckpt_path=.../last.ckpt)",
            )
        if len(read) > len(names) and read[-1] >= self.divergence_steps:
            self._warned = True
            log.warning(
                "GAN divergence: D(fake) < %g for %d steps in a row (by step %d): the discriminator wins outright "
                "and the generator learns little; try a lower discriminator LR or a stronger replay buffer",
                self.d_fake_floor,
                read[-1],
                trainer.global_step,
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer)  # raising here keeps the checkpoint from being written


def _on_any_process(trainer: L.Trainer, decision: bool) -> bool:
    """``decision`` or'ed over the processes of a distributed run (a collective every process must call)."""
    if int(getattr(trainer, "world_size", 1) or 1) <= 1:
        return decision
    return bool(trainer.strategy.reduce_boolean_decision(decision, all=False))


def _rebase(path: object, old: str, new: str) -> object:
    """``path`` under folder ``old`` -> the same file under ``new``; anything else unchanged."""
    return new + path[len(old) :] if isinstance(path, str) and path.startswith(old) else path


class RelocatedRun(L.Callback):
    """Resuming a run folder that was moved or copied (to another disk; a copy made to train on) works as in place.

    Lightning's ``ModelCheckpoint`` restores its state (best score, the files it wrote) only when the checkpoint was
    written in the same folder; otherwise it finds ``last.ckpt`` already there and writes ``last-v1.ckpt`` beside it,
    so ``checkpoints/last.ckpt`` — the file csmri resumes from and evaluates — silently stays the old state. Before
    that state is loaded, this rewrites the recorded folder in every checkpoint callback's state to the current one.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states = checkpoint.get("callbacks") or {}
        moved: set[tuple[str, str]] = set()
        for callback in trainer.checkpoint_callbacks:
            state = states.get(getattr(callback, "state_key", None))
            old, new = (state or {}).get("dirpath"), getattr(callback, "dirpath", None)
            if not (old and new) or old == new:
                continue
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state:
                    state[key] = _rebase(state[key], old, new)
            if isinstance(state.get("best_k_models"), dict):
                state["best_k_models"] = {_rebase(k, old, new): v for k, v in state["best_k_models"].items()}
            state["dirpath"] = new
            moved.add((old, new))
        for old, new in sorted(moved):  # once per folder, however many checkpoint callbacks write there
            log.info("resuming a run written in %s: its checkpoints are now in %s", old, new)


class WandbRunId(L.Callback):
    """Stores the W&B run id in every checkpoint (``checkpoint["wandb_run_id"]``) so that resuming with
    ``ckpt_path=...`` continues the same W&B run (see :func:`csmri.app.loggers.build_loggers`)."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                checkpoint["wandb_run_id"] = logger.version


class RngStateInCheckpoint(L.Callback):
    """Stores the global random states (Python, NumPy, torch CPU and CUDA) in every checkpoint and restores them
    on resume, so a resumed run draws what the uninterrupted run drew: the next epoch's shuffle, the replay
    buffer's choices, dropout. (Lightning restores model, optimiser and loop state but not these.)"""

    KEY = "csmri_rng_states"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state itself)
        checkpoint[self.KEY] = {
            "python": list(random.getstate()[1]) + [random.getstate()[0]],
            "python_gauss": random.getstate()[2],
            "numpy": [kind, torch.as_tensor(keys.astype("int64")), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        import random

        import numpy as np

        states = checkpoint.get(self.KEY)
        if not states:
            return
        python = states["python"]
        random.setstate((python[-1], tuple(python[:-1]), states["python_gauss"]))
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
