"""Using a trained model from Python: ``csmri.load(ckpt).reconstruct(kspace, mask)``.

Conventions (those of :mod:`csmri.physics`): ``kspace`` is complex, **centred** single-coil k-space
(``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``) of any batch shape ``(..., H, W)``; ``mask`` is real 0/1
and broadcasts to it (e.g. ``(H, W)``); lines are rows (H = phase encode). Unsampled entries are zeroed
(``kspace * mask``); no new mask is drawn. Each slice is scaled to maximum zero-filled magnitude 1 before the
network (training normalised the ground truth to 1 per slice) and the reconstruction is scaled back, so the result is
in the input's units. Works for every reconstruction checkpoint: stage 1, stage 2 (carries R), DAGAN, joint.

Example::

    import csmri, torch
    model = csmri.load("outputs/stage1/<run>")   # a run folder (its best.ckpt, else last.ckpt) or a .ckpt file
    images = model.reconstruct(kspace, mask)     # complex64 (..., H, W): a tensor on kspace's device, or a NumPy
                                                 # array when kspace is one
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csmri.device import resolve_device
from csmri.errors import CheckpointError, InferenceError
from csmri.physics.fft import ifft2c

PRECISIONS = ("32", "bf16")


def read_reconstruction_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a csmri reconstruction stage; :class:`InferenceError` for anything else."""
    from csmri.lit.checkpoints import MODULES, read_checkpoint

    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        raise InferenceError(err.message, f"{err.hint}; pass a .ckpt written by `csmri train`") from err
    tag = checkpoint.get("csmri_module")
    if tag == "segmentation":
        raise InferenceError(
            f"{path} is a segmentation checkpoint (experiment=segnet), not a reconstruction model",
            "pass a stage-1, stage-2, DAGAN or joint checkpoint",
        )
    if tag not in MODULES:
        raise InferenceError(
            f"{path} was not written by a csmri training stage (module tag {tag!r})",
            "pass a checkpoint from checkpoints/ of a `csmri train` run",
        )
    return checkpoint


class TrainedReconstructor:
    """A trained reconstruction module on a device, ready for user data (see the module docstring).

    Attributes:
        module: the LightningModule (eval mode). ``kind``: its ``csmri_module`` tag.
        acquisition: the training acquisition recorded in the checkpoint (mask type, acceleration, sample_n,
            center_fraction, ...), ``{}`` for checkpoints written before it was recorded.
        fixed_size: ``(H, W)`` when the network only takes one size (DAGAN's generator), else ``None``.
    """

    def __init__(
        self, path: str | Path, device: str | torch.device = "auto", precision: str = "32", batch_size: int = 16
    ) -> None:
        from csmri.lit.checkpoints import load_module, run_checkpoint

        if precision not in PRECISIONS:
            raise InferenceError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise InferenceError(f"batch size must be >= 1, got {batch_size}", "pass a positive --batch-size")
        try:
            path = run_checkpoint(path)
        except CheckpointError as err:
            raise InferenceError(err.message, err.hint) from err
        checkpoint = read_reconstruction_checkpoint(path)
        self.path = Path(path)
        self.kind: str = checkpoint["csmri_module"]
        self.acquisition: dict[str, Any] = dict(checkpoint.get("csmri_acquisition") or {})
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.module = load_module(path).to(self.device).eval()
        if not hasattr(self.module, "generate"):
            raise InferenceError(f"{path} holds a {type(self.module).__name__}, not a reconstruction model")
        generator = getattr(self.module, "generator", None)
        size = getattr(generator, "size", None)
        self.fixed_size: tuple[int, int] | None = (size, size) if isinstance(size, int) else None
        self._checked: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        return f"TrainedReconstructor({str(self.path)!r}, kind={self.kind!r}, device={str(self.device)!r})"

    # -- checks ---------------------------------------------------------------------------------------
    def check_size(self, shape: tuple[int, int], what: str = "input") -> None:
        """Raise :class:`InferenceError` unless the network can reconstruct ``(H, W)`` images (a trial forward)."""
        shape = (int(shape[0]), int(shape[1]))
        if shape in self._checked:
            return
        if self.fixed_size is not None and shape != self.fixed_size:
            h, w = self.fixed_size
            raise InferenceError(
                f"{what}: slices of {shape[0]}x{shape[1]} do not fit {self.path} (its DAGAN generator was built for "
                f"{h}x{w})",
                f"crop or resample the slices to {h}x{w}",
            )
        probe = torch.zeros(1, *shape, dtype=torch.complex64, device=self.device)
        try:
            self._forward(probe, torch.ones(1, *shape, device=self.device))
        except (RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InferenceError(
                f"{what}: slices of {shape[0]}x{shape[1]} do not fit the network of {self.path} ({first})",
                "crop or pad the slices to a size the network was built for (e.g. the training size)",
            ) from err
        self._checked.add(shape)

    # -- reconstruction -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked centred k-space ``(B, H, W)`` on the device -> complex64 reconstruction ``(B, H, W)``."""
        batch = {"kspace": kspace, "mask": mask, "zero_filled": ifft2c(kspace)}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            output = self.module.generate(batch)[0]
        from csmri.physics import channels_to_complex

        return channels_to_complex(output.float())

    def batches(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.batch_size):
            yield slice(start, min(start + self.batch_size, n))

    def reconstruct(
        self,
        kspace: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray,
        normalise: bool = True,
        progress: bool = False,
    ) -> torch.Tensor | np.ndarray:
        """Complex images ``(..., H, W)`` (complex64) from centred k-space and its mask: a tensor on ``kspace``'s
        device, or a NumPy array when ``kspace`` is one (either may be a tensor or an array).

        ``normalise``: scale each slice to maximum zero-filled magnitude 1 for the network and back afterwards.
        ``progress``: a tqdm bar over batches.
        """
        if isinstance(kspace, np.ndarray):
            return self.reconstruct(torch.from_numpy(np.ascontiguousarray(kspace)), mask, normalise, progress).numpy()
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(np.ascontiguousarray(mask))
        if not torch.is_tensor(kspace) or not torch.is_complex(kspace) or kspace.ndim < 2:
            raise InferenceError(
                "kspace must be a complex tensor or array (..., H, W)", "pass centred k-space as complex64"
            )
        if not torch.is_tensor(mask) or torch.is_complex(mask):
            raise InferenceError(
                "mask must be a real 0/1 tensor or array broadcastable to kspace", "pass e.g. an (H, W) mask"
            )
        try:
            mask = torch.broadcast_to(mask, kspace.shape)
        except RuntimeError as err:
            raise InferenceError(
                f"mask shape {tuple(mask.shape)} does not fit k-space shape {tuple(kspace.shape)}",
                "give a mask of shape (H, W) or the k-space's shape",
            ) from err
        shape = kspace.shape[-2:]
        self.check_size(shape)
        flat_k = kspace.reshape(-1, *shape)
        flat_m = mask.reshape(-1, *shape)
        out = torch.empty(flat_k.shape, dtype=torch.complex64, device=kspace.device)
        from tqdm.auto import tqdm

        n_batches = -(-flat_k.shape[0] // self.batch_size)
        for part in tqdm(
            self.batches(flat_k.shape[0]), total=n_batches, disable=None if progress else True, desc="reconstruct"
        ):
            m = (flat_m[part] != 0).to(self.device, torch.float32)
            k = flat_k[part].to(self.device, torch.complex64) * m
            scale = torch.ones(k.shape[0], 1, 1, device=self.device)
            if normalise:
                peak = ifft2c(k).abs().amax(dim=(-2, -1), keepdim=True)
                scale = torch.where(peak > torch.finfo(torch.float32).tiny, peak, torch.ones_like(peak))
            out[part] = (self._forward(k / scale, m) * scale).to(kspace.device)
        return out.reshape(kspace.shape)

    def reconstruct_batch(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The reconstruction of a simulated csmri batch (``kspace``, ``mask``, ``zero_filled``), complex."""
        return self._forward(batch["kspace"], batch["mask"])


def load(
    ckpt: str | Path, device: str | torch.device = "auto", precision: str = "32", batch_size: int = 16
) -> TrainedReconstructor:
    """Load any csmri reconstruction checkpoint (stage 1, stage 2, DAGAN, joint) for inference: a ``.ckpt`` file or a
    run folder (its ``checkpoints/best.ckpt``, else ``checkpoints/last.ckpt``).

    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda``...; ``precision``: ``32`` (default) or ``bf16``
    (autocast for the convolutions; the FFTs and data consistency stay fp32/complex64 either way);
    ``batch_size``: slices per forward pass. Raises :class:`InferenceError` for a segmentation checkpoint or a file
    that is not a csmri checkpoint.
    """
    return TrainedReconstructor(ckpt, device, precision, batch_size)
