"""The training step as csmri counts it, shared by the DataModule (the seed of each training batch's masks) and the
GAN modules (when to log sample images)."""

from __future__ import annotations

from typing import Any

__all__ = ["training_batch_counter"]


def training_batch_counter(trainer: Any) -> int:
    """Number of training batches fetched before the current one by ``trainer`` (a ``lightning.Trainer``; restored
    on resume).

    Unlike ``global_step`` it advances once per batch whatever the number of optimisers (GAN stages
    step two) or gradient-accumulation settings. Counted as the completed batches plus the current epoch's batches
    in flight: Lightning's ``total.ready`` also counts a batch fetched but not completed when a run was interrupted
    (it resets only the epoch's ``current`` counters on restart), which would shift every later training mask of a
    resumed run by one step.

    Read in ``on_after_batch_transfer`` (where the training masks are drawn) it is the current batch's 0-based index;
    read in ``training_step`` the current batch already counts (1-based), so ``% n == 0`` there fires after every
    n-th batch.
    """
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return progress.total.completed + progress.current.ready - progress.current.completed
