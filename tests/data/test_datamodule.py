from __future__ import annotations

import h5py
import lightning as L
import pytest
import torch

from csmri.data import MRIDataModule, SliceDataset
from csmri.errors import DataError
from csmri.physics import MaskSampler, fft2c


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


class _MaskRecorder(L.LightningModule):
    """A one-parameter module that records the masks the DataModule hands to each training and validation step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.train_seen: list[tuple[int, list[str], torch.Tensor]] = []  # (global step, keys, lines (B, H))
        self.val_seen: list[tuple[int, list[str], torch.Tensor]] = []  # (epoch, keys, lines (B, H))

    @staticmethod
    def _lines(batch) -> torch.Tensor:
        mask = batch["mask"]
        assert torch.equal(mask, mask[..., :1].expand_as(mask))  # whole lines
        return mask[..., 0].bool().cpu().clone()

    def training_step(self, batch, batch_idx):
        self.train_seen.append((self.global_step, list(batch["key"]), self._lines(batch)))
        return (self.weight * batch["zero_filled"].abs().mean()) ** 2

    def validation_step(self, batch, batch_idx):
        self.val_seen.append((self.current_epoch, list(batch["key"]), self._lines(batch)))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_masks_inside_trainer_fit_fresh_in_training_fixed_in_validation(phantom_root):
    """A real ``Trainer.fit`` (2 epochs x 3 training batches of 4 slices, validation each epoch): training masks differ
    between the samples of a batch, between steps, and for the same slice between epochs, and are the sampler's masks
    of (seed, step); every validation slice gets the mask defined by (eval seed, slice key), the same in both epochs."""
    dm = MRIDataModule(str(phantom_root), acceleration=4, batch_size=4, eval_batch_size=4, seed=5, eval_seed=11)
    module = _MaskRecorder()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    shape = (64, 64)

    assert [step for step, _, _ in module.train_seen] == list(range(6))  # 12 training slices, batch 4, 2 epochs
    by_slice: dict[str, list[tuple[int, torch.Tensor]]] = {}
    step_patterns = []
    for step, keys, lines in module.train_seen:
        assert torch.all(lines.sum(1) == 16)
        assert len({tuple(row.tolist()) for row in lines}) == len(keys)  # every sample its own mask
        # the documented training draw of this batch (seed, "train", rank 0, step); 3 batches per epoch
        expected, _ = MaskSampler(4, seed=5).training_masks(len(keys), shape, step, 0, torch.device("cpu"))
        assert torch.equal(lines, expected[..., 0].bool())
        step_patterns.append(lines)
        for key, row in zip(keys, lines, strict=True):
            by_slice.setdefault(key, []).append((step, row))
    # no two steps draw the same masks
    assert all(not torch.equal(a, b) for i, a in enumerate(step_patterns) for b in step_patterns[i + 1 :])
    assert len(by_slice) == 12 and all(len(seen) == 2 for seen in by_slice.values())
    eval_sampler = MaskSampler(4, seed=5, eval_seed=11)
    for key, ((s0, first), (s1, second)) in by_slice.items():
        assert s0 < 3 <= s1  # once per epoch
        assert not torch.equal(first, second), key  # the same slice, a fresh mask the next epoch
        assert not torch.equal(first, eval_sampler.evaluation_mask(key, shape)[0][:, 0].bool()), key

    # validation: the fixed mask of (eval_seed, key), computed here by a sampler of its own
    val = {epoch: {} for epoch in (0, 1)}
    for epoch, keys, lines in module.val_seen:
        for key, row in zip(keys, lines, strict=True):
            val[epoch][key] = row
    assert len(val[0]) == 6 and val[0].keys() == val[1].keys()
    fresh = MaskSampler(4, seed=123, eval_seed=11)  # the training seed plays no part
    for key in val[0]:
        expected = fresh.evaluation_mask(key, shape)[0][:, 0].bool()
        assert torch.equal(val[0][key], expected) and torch.equal(val[1][key], expected), key
