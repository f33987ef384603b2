"""Weighting of a generator's loss terms, with the paper's first-iteration normalisation.

Paper, stage 2 (``mode="first_step"``)::

    L(V) = 1/2 (L_adv / M + L_feat / N) + L_VGG / O + alpha * L_pen

M, N, O are the values of the terms at the first training iteration, so each normalised term is 1
there; with ``weights = {adv: 0.5, feat: 0.5, vgg: 1}`` this is the formula above. ``alpha="auto"``
chooses ``alpha = alpha_target / L_pen`` at the first iteration (alpha * L_pen = 0.1 by default);
``alpha=None`` means there is no penalty term.

Released code (``mode="fixed"``): no normalisation (M = N = O = 1) and fixed weights, by default
``adv 0.5, feat 1, vgg 10`` and ``alpha 2``. Other generators (DAGAN, the joint baseline) use the
same class with their own term names and weights.

The constants live in buffers, so they are stored in checkpoints and a resumed run does not recompute
them. Under DDP the first-step values are averaged over ranks (pass ``reduce``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from csmri.losses.config import AdversarialLoss

MODES = ("first_step", "fixed")
PAPER_WEIGHTS = {"adv": 0.5, "feat": 0.5, "vgg": 1.0}
PENALTY = "pen"


class LossNormalizer(nn.Module):
    """Combines named loss terms into one total loss.

    Args:
        mode: ``first_step`` (paper) or ``fixed`` (released code).
        weights: ``{term: multiplier}`` of the (normalised) terms; a weight of 0 drops the term.
        alpha: penalty (``pen`` term) weight: a float, ``"auto"`` or ``None`` (no penalty).
        alpha_target: ``alpha * L_pen`` at the first step when ``alpha="auto"``.

    The defaults are :class:`csmri.losses.config.AdversarialLoss`'s (the configs' one source of them).
    """

    def __init__(
        self,
        mode: str = AdversarialLoss.normalizer,
        weights: Mapping[str, float] | None = None,
        alpha: float | str | None = AdversarialLoss.alpha,
        alpha_target: float = AdversarialLoss.alpha_target,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normaliser mode must be one of {MODES}, got {mode!r}")
        weights = dict(PAPER_WEIGHTS if weights is None else weights)
        if not weights or PENALTY in weights:
            raise ValueError(f"loss weights need at least one term and not {PENALTY!r} (use alpha), got {weights}")
        if alpha is not None and alpha != "auto" and not isinstance(alpha, int | float):
            raise ValueError(f"alpha must be a number, 'auto' or null, got {alpha!r}")
        self.mode = mode
        self.weights = {k: float(v) for k, v in weights.items() if float(v) != 0.0}
        self.names = tuple(self.weights)
        self.has_penalty = alpha is not None
        self.auto_alpha = alpha == "auto"
        self.alpha_target = alpha_target
        self.register_buffer("scales", torch.ones(len(self.names)))  # M, N, O, ...
        self.register_buffer("alpha", torch.tensor(0.0 if alpha in (None, "auto") else float(alpha)))
        self.register_buffer("initialised", torch.tensor(not self.needs_first_step))

    @property
    def needs_first_step(self) -> bool:
        return self.mode == "first_step" or self.auto_alpha

    @property
    def term_names(self) -> tuple[str, ...]:
        """The raw terms :meth:`forward` needs."""
        return (*self.names, PENALTY) if self.has_penalty else self.names

    def _values(self, terms: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        missing = [k for k in self.term_names if k not in terms]
        if missing:
            raise ValueError(f"missing loss terms {missing}; got {sorted(terms)}")
        return [terms[k] for k in self.term_names]

    def initialise(
        self, terms: Mapping[str, torch.Tensor], reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    ) -> None:
        """Fix the scales (and an automatic alpha) from the first iteration's terms (detached)."""
        values = reduce(torch.stack([v.detach().float() for v in self._values(terms)])).clamp_min(1e-12)
        if self.mode == "first_step":
            self.scales.copy_(values[: len(self.names)])
        if self.auto_alpha:
            self.alpha.copy_(self.alpha_target / values[-1])
        self.initialised.fill_(True)

    def forward(self, terms: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the normalised terms (``<term>_norm``, and ``pen_weighted``)."""
        if not getattr(self, "_checked", False):  # checked once: bool() of a device tensor syncs with the host
            if not bool(self.initialised):
                raise RuntimeError("LossNormalizer used before initialise() on the first training step")
            self._checked = True
        self._values(terms)
        normalised = {f"{k}_norm": terms[k] / self.scales[i] for i, k in enumerate(self.names)}
        total = sum(self.weights[k] * normalised[f"{k}_norm"] for k in self.names)
        if self.has_penalty:
            normalised["pen_weighted"] = self.alpha * terms[PENALTY]
            total = total + normalised["pen_weighted"]
        return total, normalised

    def extra_repr(self) -> str:
        alpha = "auto" if self.auto_alpha else (float(self.alpha) if self.has_penalty else None)
        return f"mode={self.mode}, weights={self.weights}, alpha={alpha}"
