from __future__ import annotations

import h5py
import pytest
import torch

from csmri.data import MRIDataModule, SliceDataset
from csmri.errors import DataError
from csmri.physics import fft2c


def _eval_masks(root, batch_size: int, num_workers: int) -> dict[str, torch.Tensor]:
    dm = MRIDataModule(str(root), eval_batch_size=batch_size, num_workers=num_workers, seed=3)
    dm.setup("validate")
    masks = {}
    for batch in dm.val_dataloader():
        batch = dm.on_after_batch_transfer(batch, 0)
        masks.update({key: mask for key, mask in zip(batch["key"], batch["mask"], strict=True)})
    return masks


def test_dataset_items(phantom_root):
    ds = SliceDataset(phantom_root, "train")
    assert len(ds) == 2 * 6
    item = ds[0]
    assert item["target"].dtype == torch.complex64 and item["target"].shape == (64, 64)
    assert item["target"].abs().max().item() == pytest.approx(1.0, abs=1e-6)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    assert "/" in item["key"]
    assert len(set(ds.keys)) == len(ds)
    cached = SliceDataset(phantom_root, "train", cache=True)
    torch.testing.assert_close(cached[5]["target"], ds[5]["target"])


def test_evaluation_masks_independent_of_batch_size_and_workers(phantom_root):
    reference = _eval_masks(phantom_root, batch_size=1, num_workers=0)
    assert len(reference) == 6
    for batch_size, workers in [(4, 0), (1, 2), (4, 2)]:
        other = _eval_masks(phantom_root, batch_size, workers)
        assert other.keys() == reference.keys()
        for key in reference:
            assert torch.equal(other[key], reference[key]), (batch_size, workers, key)
    # different slices get different masks
    assert len({tuple(m[:, 0].tolist()) for m in reference.values()}) > 1


def test_simulated_batch_is_consistent(phantom_root):
    dm = MRIDataModule(str(phantom_root), acceleration=4, eval_batch_size=3)
    dm.setup("validate")
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert set(batch) >= {"target", "kspace", "mask", "zero_filled", "label", "key"}
    assert batch["mask"].shape == batch["target"].shape
    assert torch.all(batch["mask"][:, :, 0].sum(1) == 16)
    full = fft2c(batch["target"])
    torch.testing.assert_close(batch["kspace"], full * batch["mask"])
    torch.testing.assert_close(fft2c(batch["zero_filled"]), batch["kspace"], atol=1e-5, rtol=1e-5)


def test_evaluation_noise_is_deterministic_per_key(phantom_root):
    dm = MRIDataModule(str(phantom_root), noise_std=0.01, eval_batch_size=2)
    dm.setup("validate")
    batches = [dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0) for _ in range(2)]
    torch.testing.assert_close(batches[0]["kspace"], batches[1]["kspace"])
    noise = batches[0]["kspace"] - fft2c(batches[0]["target"]) * batches[0]["mask"]
    assert noise.abs().max() > 0
    assert torch.all(noise[batches[0]["mask"] == 0] == 0)


def test_phantom_source_generates_on_first_use(tmp_path):
    root = tmp_path / "auto"
    source = {"_target_": "csmri.data.sources.phantom.PhantomSource", "patients": 3, "size": 32, "slices": 2}
    dm = MRIDataModule(str(root), source=source, acceleration=4)
    dm.prepare_data()
    assert (root / "meta.json").is_file()
    dm.prepare_data()  # idempotent
    dm.setup("fit")
    assert len(dm.dataset("train")) >= 2


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no noise from half-built datasets
def test_clear_errors(tmp_path, phantom_root):
    with pytest.raises(FileNotFoundError, match="csmri data phantom"):
        MRIDataModule(str(tmp_path / "nothing")).setup("fit")
    with pytest.raises(Exception, match="patiens"):
        MRIDataModule(str(tmp_path), source={"_target_": "csmri.data.sources.phantom.PhantomSource", "patiens": 3})
    with pytest.raises(TypeError, match="source"):
        MRIDataModule(str(tmp_path), source=object())
    with pytest.raises(ValueError, match="fewer than"):
        MRIDataModule(str(phantom_root), acceleration=64, sample_n=2).setup("fit")
    with pytest.raises(ValueError, match="split"):
        SliceDataset(phantom_root, "training")


def test_corrupt_file_names_the_file(tmp_path, phantom_root):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(phantom_root, root)
    victim = next((root / "val").glob("*.h5"))
    victim.write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError, match=victim.name):
        SliceDataset(root, "val")
    victim.unlink()
    with h5py.File(victim, "w") as f:
        f["image"] = torch.zeros(2, 8, 8, dtype=torch.complex64).numpy()
    with pytest.raises(ValueError, match="missing dataset 'label'"):
        SliceDataset(root, "val")
