"""Experience replay for the discriminator's fake inputs (Shrivastava et al. 2017).

Keeps up to ``capacity`` past refined images. For each new image: while the buffer is filling, the
image is stored and used as is; once full, with probability ``p`` a random stored image is used
instead and the new one takes its place, else the new image is used. The buffer is a persistent
module buffer, so it is saved in and restored from checkpoints.
"""

from __future__ import annotations

import torch
from torch import nn


class ReplayBuffer(nn.Module):
    """Replay buffer of images ``(C, H, W)``; :meth:`query` maps a batch ``(B, C, H, W)`` to D's fakes."""

    def __init__(self, capacity: int = 80, p: float = 0.5) -> None:
        super().__init__()
        if capacity < 0 or not 0 <= p <= 1:
            raise ValueError(f"need capacity >= 0 and 0 <= p <= 1, got {capacity}, {p}")
        self.capacity = capacity
        self.p = p
        self.register_buffer("images", torch.empty(0))
        self.register_buffer("count", torch.tensor(0))
        self._filled: int | None = None  # a host-side copy of ``count``: no device sync per image

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        # the stored images' shape is only known from the checkpoint: resize before loading
        key = f"{prefix}images"
        if key in state_dict:
            self.images = torch.empty_like(state_dict[key], device=self.images.device)
        self._filled = None  # re-read from the loaded ``count``
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def query(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """D's fake inputs for ``batch`` (detached); updates the buffer."""
        batch = batch.detach()
        if self.capacity == 0:
            return batch
        if self.images.numel() == 0:
            self.images = torch.zeros(self.capacity, *batch.shape[1:], dtype=batch.dtype, device=batch.device)
        out = batch.clone()
        device = generator.device if generator is not None else torch.device("cpu")
        if self._filled is None:
            self._filled = int(self.count)
        for i, image in enumerate(batch):
            n = self._filled
            if n < self.capacity:
                self.images[n] = image
                self.count += 1
                self._filled = n + 1
            elif torch.rand((), generator=generator, device=device) < self.p:
                j = int(torch.randint(self.capacity, (), generator=generator, device=device))
                out[i] = self.images[j]
                self.images[j] = image
        return out
