"""The LightningDataModule shared by every training stage and by evaluation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from csmri.data.dataset import SliceDataset, read_meta
from csmri.data.sampling import MaskSampler

log = logging.getLogger(__name__)

DEFAULT_PHANTOM = {"patients": 37, "size": 128, "slices": 20, "seed": 0, "noise_std": 0.0}


class MRIDataModule(L.LightningDataModule):
    """Fully-sampled slices from a csmri dataset, undersampled on the fly on the batch's device.

    Batches (after :meth:`on_after_batch_transfer`) are dicts with
    ``target`` complex ``(B, H, W)`` (max magnitude 1 per slice), ``kspace`` masked centred k-space
    ``(B, H, W)``, ``mask`` float 0/1 ``(B, H, W)``, ``zero_filled`` complex ``(B, H, W)``,
    ``label`` int64 ``(B, H, W)`` and ``key`` (list of ``"patient/slice"``). See
    :mod:`csmri.data.sampling` for how masks are seeded.

    Args:
        root: dataset directory (``csmri-slices-v1`` layout).
        acceleration, sample_n, noise_std: acquisition simulation, see :class:`MaskSampler`.
        batch_size: training batch size; ``eval_batch_size`` for val/test (default: same).
        num_workers: DataLoader workers.
        seed: base seed of all masks.
        cache: load every slice into RAM once instead of reading HDF5 per item.
        generate_if_missing: write the phantom dataset to ``root`` first if it does not exist.
        phantom: phantom parameters for ``generate_if_missing`` (patients, size, slices, seed, noise_std).
    """

    def __init__(
        self,
        root: str,
        acceleration: float = 8.0,
        sample_n: int | None = None,
        noise_std: float = 0.0,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache: bool = False,
        generate_if_missing: bool = False,
        phantom: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        unknown = set(phantom or {}) - set(DEFAULT_PHANTOM)
        if unknown:
            raise ValueError(f"unknown phantom options {sorted(unknown)}; known: {sorted(DEFAULT_PHANTOM)}")
        self.root = Path(root)
        self.sampler = MaskSampler(acceleration, sample_n, noise_std, seed)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.generate_if_missing = generate_if_missing
        self.phantom = {**DEFAULT_PHANTOM, **dict(phantom or {})}
        self.datasets: dict[str, SliceDataset] = {}

    # -- data on disk -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the phantom dataset when ``generate_if_missing`` and ``root`` has none (rank 0 only)."""
        if (self.root / "meta.json").is_file() or not self.generate_if_missing:
            return
        from csmri.data.phantom import write_phantom_dataset

        log.info("no dataset at %s: generating the phantom dataset %s", self.root, self.phantom)
        p = self.phantom
        write_phantom_dataset(
            self.root, n_patients=p["patients"], size=p["size"], n_slices=p["slices"], seed=p["seed"],
            noise_std=p["noise_std"],
        )  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        meta = read_meta(self.root)
        self.sampler.check_shape(tuple(meta["size"]))
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ("train", "val", "test"))
        for split in wanted:
            self.dataset(split)

    def dataset(self, split: str) -> SliceDataset:
        """The :class:`SliceDataset` of ``split`` (opened once)."""
        if split not in self.datasets:
            self.datasets[split] = SliceDataset(self.root, split, cache=self.cache)
        return self.datasets[split]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    # -- undersampling on the device ----------------------------------------------------------------
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        trainer = self.trainer
        training = bool(trainer is not None and trainer.training)
        step = rank = 0
        if training:
            step = training_batch_counter(trainer)
            rank = trainer.global_rank
        return self.sampler.simulate(batch, train=training, step=step, rank=rank)


def training_batch_counter(trainer: L.Trainer) -> int:
    """Number of training batches fetched before the current one (restored on resume).

    Unlike ``global_step`` it advances once per batch whatever the number of optimisers (GAN stages
    step two) or gradient-accumulation settings.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.total.ready
