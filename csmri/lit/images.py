"""Sample reconstructions as images: a PNG in the run directory and, with W&B, a logged image."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


def sample_panel(columns: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Save one row of magnitude images ``(H, W)`` side by side; signed images (differences) use a
    symmetric colour map. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 2.8), squeeze=False)
    for ax, (title, image) in zip(axes[0], columns.items(), strict=True):
        array = image.detach().float().cpu().numpy()
        if array.min() < 0:
            limit = float(np.abs(array).max()) or 1.0
            ax.imshow(array, cmap="seismic", vmin=-limit, vmax=limit)
        else:
            ax.imshow(array, cmap="gray", vmin=0.0, vmax=max(float(array.max()), 1e-8))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_sample_images(module: L.LightningModule, tag: str, columns: Mapping[str, torch.Tensor]) -> None:
    """Write ``<run dir>/samples/<tag>.png`` (rank 0) and log it to W&B when a W&B logger is attached."""
    trainer = module.trainer
    if trainer is None or trainer.global_rank != 0 or trainer.sanity_checking or not trainer.loggers:
        return  # no logger (e.g. a bare Trainer(logger=False).validate): nothing is written into the working directory
    path = sample_panel(columns, Path(trainer.default_root_dir) / "samples" / f"{tag.replace('/', '_')}.png")
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            logger.log_image(key=tag.split("/")[0] + "/samples", images=[str(path)], step=trainer.global_step)
