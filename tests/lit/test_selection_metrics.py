"""The validation metrics that choose a baseline's checkpoint are per-slice means over the whole validation split;
stage 1's training PSNR/SSIM are those of the outputs it was trained on.

Stage 1 keeps the epoch of lowest ``val/loss`` (the MSE, RecNet's row and stage 2's frozen R) and DAGAN that of
lowest ``val/nmse`` (its protocol). Lightning averages a logged value over an epoch weighted by each call's
``batch_size``; a wrong weight makes the last, smaller batch count as much as a full one and can move the chosen
epoch. The expected values are computed here one slice at a time.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from csmri.app.train import build_module
from csmri.losses.dagan import dagan_nmse_01
from csmri.physics import complex_to_channels
from tests.helpers import STAGE1_SMALL, tiny_dagan_overrides, train_config


def _stage1_loss(module, output, batch):
    return module.loss_fn(output, complex_to_channels(batch["target"]))


def _dagan_nmse(module, output, batch):
    return dagan_nmse_01(output, batch["target"])


def _stage1_overrides(phantom_root, *extra):
    return ["experiment=stage1", f"data.root={phantom_root}", *STAGE1_SMALL, *extra]


def _magnitudes(output: torch.Tensor, target: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prediction, ground truth) magnitude pairs per slice, float64, from channels and complex images."""
    pred = torch.view_as_complex(output.permute(0, 2, 3, 1).contiguous()).abs().numpy().astype(np.float64)
    return list(zip(pred, target.abs().numpy().astype(np.float64), strict=True))


def _skimage_psnr(output: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Per-slice PSNR of magnitudes by scikit-image (data range: the ground-truth slice's max)."""
    from skimage.metrics import peak_signal_noise_ratio

    return [peak_signal_noise_ratio(t, p, data_range=t.max()) for p, t in _magnitudes(output, target)]


def _skimage_ssim(output: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Per-slice SSIM of magnitudes by scikit-image (Gaussian window σ 1.5, data range: the ground-truth max)."""
    from skimage.metrics import structural_similarity

    return [
        structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=t.max())
        for p, t in _magnitudes(output, target)
    ]


def _zero_filled_psnr(module, output, batch):
    (value,) = _skimage_psnr(complex_to_channels(batch["zero_filled"]), batch["target"])
    return torch.tensor(value)


CASES = {  # case: (its overrides on the test phantom, the logged metric, that metric of one slice)
    "stage1": (_stage1_overrides, "val/loss", _stage1_loss),
    "stage1_zero_filled": (_stage1_overrides, "val/psnr_zero_filled", _zero_filled_psnr),  # the curves' baseline
    "dagan": (tiny_dagan_overrides, "val/nmse", _dagan_nmse),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_selection_metric_is_the_per_slice_mean_over_an_uneven_epoch(case, phantom_root, tmp_path):
    overrides, metric, per_slice = CASES[case]
    # 6 validation slices: batches of 4 and 2
    cfg = train_config(overrides(phantom_root, "data.acceleration=4", "data.eval_batch_size=4"), tmp_path)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    (logged,) = trainer.validate(module, datamodule=datamodule, verbose=False)

    datamodule.eval_batch_size = 1  # the same slices and fixed masks (keyed by slice), one at a time
    values = []
    module.eval()
    with torch.no_grad():
        for raw in datamodule.val_dataloader():
            batch = datamodule.on_after_batch_transfer(raw, 0)  # not training: the fixed evaluation masks
            output, _ = module.generate(batch)
            values.append(per_slice(module, output.float(), batch).item())
    assert len(values) == 6
    assert max(values) - min(values) > 0.05 * max(values)  # slices differ: a batch-weighting error shows
    assert logged[metric] == pytest.approx(sum(values) / len(values), rel=1e-5)


def test_stage1_train_metrics_are_epoch_means_of_the_training_outputs(phantom_root, tmp_path):
    """``model.train_metrics=true``: ``train/psnr`` and ``train/ssim`` are the epoch's per-slice means of the
    outputs the loss was computed on (12 training slices in batches of 5, 5, 2), logged once per epoch."""
    cfg = train_config(
        _stage1_overrides(phantom_root, "data.acceleration=4", "data.batch_size=5", "model.train_metrics=true"),
        tmp_path,
    )
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    generate = module.generate

    def recording_generate(batch):
        result = generate(batch)
        if module.training:
            seen.append((result[0].detach().float(), batch["target"]))
        return result

    module.generate = recording_generate
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=datamodule)

    assert [output.shape[0] for output, _ in seen] == [5, 5, 2]
    psnrs = [value for output, target in seen for value in _skimage_psnr(output, target)]
    ssims = [value for output, target in seen for value in _skimage_ssim(output, target)]
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    assert set(logged) == {"train/loss", "train/psnr", "train/ssim"}  # epoch values only, no _step/_epoch twins
    assert logged["train/psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert logged["train/ssim"] == pytest.approx(np.mean(ssims), abs=1e-4)
