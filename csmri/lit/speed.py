"""How the networks of a LightningModule run: channels-last memory format and the optional ``torch.compile``.

Modules list their networks in ``networks`` (attribute names) and take ``channels_last`` (default on: convolutions
run ~1.7x faster on AVX-512 CPUs and use tensor cores on GPUs) and ``compile`` (default off: on the 2-core CPUs we
measured, eager bf16 + channels-last was faster than compiled) as hyper-parameters. Modules whose networks are all
VGG-width set ``wide_convolutions = True``: ``trainer.precision=auto`` then picks bf16-mixed on CPUs where only
wide convolutions gain from it (:mod:`csmri.lit.precision`). State dicts load either way:
the memory format is a property of the tensors in memory, not of the checkpoint.
"""

from __future__ import annotations

import torch


class NetworkSpeedMixin:
    """Mixin for LightningModules: applies ``hparams.channels_last`` and ``hparams.compile`` in ``configure_model``."""

    networks: tuple[str, ...] = ()
    wide_convolutions: bool = False  # all networks 64+ channels wide (bf16 pays on avx512_bf16 CPUs without AMX)

    def configure_model(self) -> None:
        hparams = self.hparams  # type: ignore[attr-defined]
        if hparams.get("channels_last", True):
            self.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
        if hparams.get("compile", False) and not getattr(self, "_networks_compiled", False):
            for name in self.networks:
                getattr(self, name).compile()
            self._networks_compiled = True
