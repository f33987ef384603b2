"""The training split's shuffled order, resumable in the middle of an epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import RandomSampler


class ResumableShuffle(RandomSampler):
    """``torch.utils.data.RandomSampler``'s order (per epoch one int64 seed drawn from the global torch RNG, then
    ``randperm`` of that seed: the same indices), whose epoch can be continued after a restart.

    :attr:`seed` is the current epoch's seed. :meth:`resume` makes the next iteration replay the epoch of ``seed``
    from index ``start`` on, without drawing from the global RNG — what the interrupted run was about to see (a
    plain ``DataLoader`` resumed mid-epoch by Lightning starts a newly shuffled epoch at its first batch) — and puts
    the global torch RNG back to ``rng_state``, the state saved with the checkpoint: creating the resumed loader's
    iterator drew a worker base seed from it that the interrupted run drew at the epoch's start. Being a
    ``RandomSampler``, it is replaced by Lightning's ``DistributedSampler`` under DDP as before.
    """

    def __init__(self, data_source: Sized) -> None:
        super().__init__(data_source)
        self.seed: int | None = None
        self._resume: tuple[int, int, torch.Tensor | None] | None = None

    def resume(self, seed: int, start: int, rng_state: torch.Tensor | None = None) -> None:
        """Continue the epoch shuffled with ``seed`` at its ``start``-th index (on the next iteration only), with the
        global torch RNG set to ``rng_state`` (if given) when that iteration begins."""
        self._resume = (int(seed), int(start), rng_state)

    def __iter__(self) -> Iterator[int]:
        if self._resume is not None:
            (self.seed, start, rng_state), self._resume = self._resume, None
            if rng_state is not None:
                torch.set_rng_state(rng_state)
        else:
            self.seed, start = int(torch.empty((), dtype=torch.int64).random_().item()), 0
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()[start:]
