"""Acquisition simulation for batches: which mask each slice gets, and the undersampled inputs.

Mask seeding rules (the reason this module exists):

- **training**: a fresh mask for every sample of every batch, drawn on the batch's device from a
  generator seeded by ``(seed, "train", rank, step)``; ``step`` counts training batches, so masks
  differ across batches and ranks and repeat exactly after resuming from a checkpoint;
- **evaluation** (validation and test): one fixed mask per slice, seeded by ``(eval_seed, "eval", key)``
  only, drawn on the CPU (a 1-D line pattern, negligible cost) and moved to the device — identical whatever
  the batch size, worker count, order, DDP rank or device type, so every method is evaluated on identical
  inputs. ``eval_seed`` is apart from the training ``seed`` (the configs fix it at 0), so that runs trained
  from different seeds are validated on the same masks; ``None`` means "the training seed".

The same rules hold for every mask type (gaussian, random, equispaced; see :func:`csmri.physics.mask.line_mask`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from csmri.physics.mask import LineMaskFunc, mask_func, mask_name
from csmri.physics.seeding import seeded_generator
from csmri.physics.undersample import undersample, zero_filled


class MaskSampler:
    """Draws masks and simulates undersampled acquisitions for batches of complex slices.

    Args:
        acceleration: undersampling factor (``floor(H / acceleration)`` lines are sampled).
        sample_n: always-sampled centre lines; ``None`` = :func:`csmri.physics.default_sample_n`.
        noise_std: std of complex Gaussian k-space noise per real component (0 = noiseless).
        seed: base seed of the training masks and noise (and of evaluation masks if ``eval_seed`` is ``None``).
        mask: the mask family: ``gaussian`` (the paper's), ``random`` or ``equispaced`` (fastMRI's), or a
            :class:`csmri.physics.mask.LineMaskFunc` class (a factory of one, or its dotted path), see
            :func:`csmri.physics.mask.mask_func`.
        center_fraction: fraction of always-sampled centre lines (instead of ``sample_n``; fastMRI's setting).
        eval_seed: base seed of the fixed validation/test masks and noise; ``None`` = ``seed``.
    """

    def __init__(
        self,
        acceleration: float = 8.0,
        sample_n: int | None = None,
        noise_std: float = 0.0,
        seed: int = 0,
        mask: str | type[LineMaskFunc] | Callable[..., LineMaskFunc] = "gaussian",
        center_fraction: float | None = None,
        eval_seed: int | None = None,
    ) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.mask_func = mask_func(mask, acceleration, sample_n, center_fraction)
        self.acceleration = acceleration
        self.sample_n = sample_n
        self.noise_std = noise_std
        self.seed = seed
        self.eval_seed = seed if eval_seed is None else eval_seed
        self.mask = mask_name(self.mask_func)  # the family's name, as checkpoints record it
        self.center_fraction = center_fraction

    @property
    def settings(self) -> dict[str, Any]:
        """The acquisition settings (recorded in checkpoints and ``run_info.json``; used by ``csmri reconstruct``)."""
        return {
            "mask": self.mask,
            "acceleration": self.acceleration,
            "sample_n": self.sample_n,
            "center_fraction": self.center_fraction,
            "noise_std": self.noise_std,
            "seed": self.seed,
            "eval_seed": self.eval_seed,
        }

    def _draw(
        self, batch_size: int, shape: tuple[int, int], generator: torch.Generator, device: torch.device | None = None
    ) -> torch.Tensor:
        return self.mask_func(batch_size, shape, generator, device)

    def check_shape(self, shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` early if masks cannot be drawn for images of ``shape = (H, W)``."""
        self.mask_func.check_shape(shape)

    def training_masks(
        self, batch_size: int, shape: tuple[int, int], step: int, rank: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Generator]:
        """Fresh masks ``(B, H, W)`` on ``device`` for training batch ``step`` on ``rank``.

        Also returns the generator (advanced past the masks) for the noise draw of the same batch.
        """
        generator = seeded_generator(self.seed, "train", rank, step, device=device)
        masks = self._draw(batch_size, shape, generator, device)
        return masks, generator

    def evaluation_mask(self, key: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Generator]:
        """The fixed CPU mask ``(H, W)`` of slice ``key`` and its (advanced) CPU generator."""
        generator = seeded_generator(self.eval_seed, "eval", key)
        mask = self._draw(1, shape, generator)[0]
        return mask, generator

    def simulate(
        self,
        batch: dict[str, Any],
        train: bool,
        step: int = 0,
        rank: int = 0,
    ) -> dict[str, Any]:
        """Add ``mask``, ``kspace`` (masked, centred) and ``zero_filled`` to a batch with ``target``.

        ``target`` is complex ``(B, H, W)``; evaluation batches need ``key`` (a list of slice keys).
        The batch dict is updated in place and returned.
        """
        target: torch.Tensor = batch["target"]
        if not torch.is_complex(target) or target.ndim != 3:
            raise ValueError(f"batch['target'] must be complex (B, H, W), got {tuple(target.shape)} {target.dtype}")
        shape = (target.shape[-2], target.shape[-1])
        if train:
            mask, generator = self.training_masks(target.shape[0], shape, step, rank, target.device)
            kspace = undersample(target, mask, self.noise_std, generator)
        else:
            kspace, mask = self._evaluation_kspace(target, batch["key"], shape)
        batch["mask"] = mask
        batch["kspace"] = kspace
        batch["zero_filled"] = zero_filled(kspace)
        return batch

    def _evaluation_kspace(
        self, target: torch.Tensor, keys: Sequence[str], shape: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        masks, noise = [], []
        for key in keys:
            mask, generator = self.evaluation_mask(key, shape)
            masks.append(mask)
            if self.noise_std > 0:
                noise.append(torch.randn(shape, dtype=torch.complex64, generator=generator))
        mask = torch.stack(masks).to(target.device)
        kspace = undersample(target, mask)
        if noise:
            kspace = kspace + torch.stack(noise).to(target.device) * (self.noise_std * 2**0.5) * mask
        return kspace, mask
