"""The LightningDataModule shared by every training stage and by evaluation."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

from csmri.data.dataset import SliceDataset
from csmri.data.layout import read_meta
from csmri.data.order import ResumableShuffle
from csmri.data.sources import DatasetSource
from csmri.physics.sampling import MaskSampler
from csmri.progress import training_batch_counter

log = logging.getLogger(__name__)

LIGHTNING_NOT_RESUMABLE = r"You're resuming from a checkpoint that ended before the epoch ended"


class MRIDataModule(L.LightningDataModule):
    """Fully-sampled slices from a csmri dataset, undersampled on the fly on the batch's device.

    Batches (after :meth:`on_after_batch_transfer`) are dicts with
    ``target`` complex ``(B, H, W)`` (max magnitude 1 per slice), ``kspace`` masked centred k-space
    ``(B, H, W)``, ``mask`` float 0/1 ``(B, H, W)``, ``zero_filled`` complex ``(B, H, W)``,
    ``label`` int64 ``(B, H, W)`` and ``key`` (list of ``"patient/slice"``). See
    :mod:`csmri.physics.sampling` for how masks are seeded.

    Args:
        root: dataset directory: a prepared dataset (:mod:`csmri.data.layout`), or the input of ``source``.
        acceleration, sample_n, noise_std: acquisition simulation, see :class:`MaskSampler`.
        batch_size: training batch size; ``eval_batch_size`` for val/test (default: same).
        num_workers: DataLoader workers.
        seed: base seed of the training masks; ``eval_seed``: of the fixed validation/test masks
            (``None`` = ``seed``; the configs fix it at 0 so that every training seed is validated on the same masks).
        cache: load every slice into RAM once instead of reading HDF5 per item.
        source: a :class:`csmri.data.sources.DatasetSource` (or its ``_target_`` config) that prepares
            the layout from ``root`` when missing, e.g. the phantom generator or a folder of NIfTI files.
        mask, center_fraction: the mask family (``gaussian`` | ``random`` | ``equispaced``, or a
            :class:`csmri.physics.mask.LineMaskFunc` class or ``_partial_`` factory, as the configs name it by
            ``_target_``) and fastMRI's fraction of
            centre lines, see :class:`MaskSampler`. The acquisition settings (:attr:`acquisition`) are stored in
            every checkpoint as ``csmri_acquisition``.

    ``predict_dataloader`` serves the test split with the fixed evaluation masks (``Trainer.predict``).
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
        source: DatasetSource | Mapping[str, Any] | None = None,
        mask: Any = "gaussian",
        center_fraction: float | None = None,
        eval_seed: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(source, Mapping):
            source = instantiate(source)
        if source is not None and not isinstance(source, DatasetSource):
            raise TypeError(f"source must implement layout_dir() and prepare(), got {type(source).__name__}")
        self.source = source
        self.root = Path(root)
        self.sampler = MaskSampler(acceleration, sample_n, noise_std, seed, mask, center_fraction, eval_seed)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.datasets: dict[str, SliceDataset] = {}
        self.image_size: list[int] | None = None  # (H, W), known after setup()
        self.train_order: ResumableShuffle | None = None  # the training loader's shuffle (see state_dict)
        self._resume_order: tuple[int, int, torch.Tensor | None] | None = None

    # -- data on disk -------------------------------------------------------------------------------
    @property
    def layout_dir(self) -> Path:
        """The prepared dataset read by the loaders (``root`` itself unless a source puts it elsewhere)."""
        return self.source.layout_dir(self.root) if self.source is not None else self.root

    def expected_image_size(self) -> int:
        """The images' height H, before :meth:`setup`: from the prepared dataset's meta.json when it exists, else the
        source's configured ``size`` (an int, or ``[H, W]``). For modules whose networks follow the image size
        (DAGAN's generator and global discriminator); :class:`csmri.errors.ConfigError` when neither says it."""
        from csmri.data.layout import has_layout
        from csmri.errors import ConfigError

        if has_layout(self.layout_dir):
            return int(read_meta(self.layout_dir)["size"][0])
        size = getattr(self.source, "size", None)
        if isinstance(size, list | tuple):
            size = size[0] if size else None
        if size is None:
            raise ConfigError(
                f"the image size of the data at {self.root} is not known before it is prepared",
                f"set data.source.size=[H,W] or model.image_size=H, or prepare it first: "
                f"csmri data prepare data=<name> data.root={self.root}",
            )
        return int(size)

    def prepare_data(self) -> None:
        """Let the source write the layout if it is missing (called on local rank 0 only)."""
        if self.source is not None:
            self.source.prepare(self.root)

    def setup(self, stage: str | None = None) -> None:
        meta = read_meta(self.layout_dir)
        self.sampler.check_shape(tuple(meta["size"]))
        self.image_size = [int(n) for n in meta["size"]]
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage, ("train", "val", "test")
        )
        for split in wanted:
            self.dataset(split)

    def dataset(self, split: str) -> SliceDataset:
        """The :class:`SliceDataset` of ``split`` (opened once)."""
        if split not in self.datasets:
            self.datasets[split] = SliceDataset(self.layout_dir, split, cache=self.cache)
        return self.datasets[split]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        order = None
        if shuffle:
            order = self.train_order = ResumableShuffle(self.dataset(split))
            if self._resume_order is not None:
                order.resume(*self._resume_order)
                self._resume_order = None
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            sampler=order,
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

    def predict_dataloader(self) -> DataLoader:
        """The test split, undersampled with the fixed evaluation masks."""
        return self._loader("test", self.eval_batch_size, shuffle=False)

    # -- resuming mid-epoch ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """In a checkpoint written inside an epoch: that epoch's shuffle seed, the number of training slices whose
        batches are done and the global torch RNG state, so that a resumed run sees the rest of the same epoch in the
        same order and draws what the interrupted run drew (:class:`csmri.data.order.ResumableShuffle`). Empty at an
        epoch's end and when Lightning replaced the sampler (DDP)."""
        trainer, order = self.trainer, self.train_order
        if trainer is None or order is None or order.seed is None:
            return {}
        # batches whose training step ran (Lightning resumes after these, also from a save in on_train_batch_end)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            return {}
        start = done * self.batch_size
        return {"train_order": {"seed": order.seed, "start": start, "torch_rng": torch.get_rng_state()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        order = state_dict.get("train_order")
        self._resume_order = (int(order["seed"]), int(order["start"]), order.get("torch_rng")) if order else None
        if order:  # Lightning's warning that a plain DataLoader restarts the epoch: this one continues it
            warnings.filterwarnings("ignore", message=LIGHTNING_NOT_RESUMABLE, category=PossibleUserWarning)

    @property
    def acquisition(self) -> dict[str, Any]:
        """Mask type, acceleration, centre lines, noise and seed of the simulated acquisition; image ``size``."""
        return {**self.sampler.settings, "size": self.image_size}

    # -- undersampling on the device ----------------------------------------------------------------
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        trainer = self.trainer
        training = bool(trainer is not None and trainer.training)
        step = rank = 0
        if training:
            step = training_batch_counter(trainer)
            rank = trainer.global_rank
        return self.sampler.simulate(batch, train=training, step=step, rank=rank)
