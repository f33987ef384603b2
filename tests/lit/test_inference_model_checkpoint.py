"""InferenceModelCheckpoint: its files leave out optimiser state, the discriminator and the replay buffer; its
``save_last`` file and the plain ModelCheckpoint's stay full; a monitoring one's state sits under ModelCheckpoint's key,
a monitor-less one (every epoch's weights) beside ``last.ckpt``'s callback under its own."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from csmri.lit.callbacks import InferenceModelCheckpoint
from csmri.lit.checkpoints import INFERENCE_ONLY


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.discriminator = nn.Linear(2, 1)
        self.register_buffer("replay", torch.zeros(3))

    def training_step(self, batch, batch_idx):
        loss = self.net(batch[0]).pow(2).mean() + self.discriminator(batch[0]).mean()
        self.log("val_metric", loss.detach())
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def test_kept_files_are_lean_last_files_full(tmp_path):
    lean = InferenceModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val_metric", save_last=True)
    lean.CHECKPOINT_NAME_LAST = "best_last"
    full = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None)
    trainer = L.Trainer(
        max_epochs=2, callbacks=[lean, full], logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(_Tiny())
    best = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert "optimizer_states" not in best and best[INFERENCE_ONLY] == ["discriminator."]
    assert sorted(best["state_dict"]) == ["net.bias", "net.weight", "replay"]  # "replay." is a prefix: not this
    for name in ("best_last.ckpt", "last.ckpt"):
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        assert "optimizer_states" in checkpoint and INFERENCE_ONLY not in checkpoint, name
        assert "discriminator.weight" in checkpoint["state_dict"], name
    keys = list(best["callbacks"])
    assert any(k.startswith("ModelCheckpoint{'monitor': 'val_metric'") for k in keys), keys
    assert not any(k.startswith("InferenceModelCheckpoint") for k in keys), keys


def test_every_epochs_weights_beside_last_ckpt(tmp_path):
    """The stage-2 curve's recipe: an inference snapshot every epoch next to the shipped ``last.ckpt`` callback, both
    without a monitor. Under one state key Lightning refuses the pair before training starts."""
    snapshots = InferenceModelCheckpoint(
        dirpath=tmp_path / "periodic",
        filename="epoch{epoch:02d}",
        monitor=None,
        every_n_epochs=1,
        save_top_k=-1,
        auto_insert_metric_name=False,
    )
    full = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None)
    trainer = L.Trainer(
        max_epochs=3, callbacks=[snapshots, full], logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(_Tiny())
    assert sorted(p.name for p in (tmp_path / "periodic").iterdir()) == ["epoch00.ckpt", "epoch01.ckpt", "epoch02.ckpt"]
    assert "optimizer_states" not in torch.load(tmp_path / "periodic" / "epoch01.ckpt", weights_only=True)
    assert "optimizer_states" in torch.load(tmp_path / "last.ckpt", weights_only=True)
