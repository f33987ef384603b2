"""Data: the phantom generator, the slice dataset, acquisition simulation and the DataModule."""

from csmri.data.datamodule import MRIDataModule
from csmri.data.dataset import SliceDataset, read_meta
from csmri.data.sampling import MaskSampler

__all__ = ["MRIDataModule", "MaskSampler", "SliceDataset", "read_meta"]
