"""The weighting of stage 2's generator loss terms.

Paper (``mode="first_step"``)::

    L(V) = 1/2 (L_adv / M + L_feat / N) + L_VGG / O + alpha * L_pen

M, N, O are the values of the terms at the first training iteration, so each normalised term is 1
there; with ``weights = {adv: 0.5, feat: 0.5, vgg: 1}`` this is the formula above. ``alpha="auto"``
chooses ``alpha = alpha_target / L_pen`` at the first iteration (alpha * L_pen = 0.1 by default).

Released code (``mode="fixed"``): no normalisation (M = N = O = 1) and fixed weights, by default
``adv 0.5, feat 1, vgg 10`` and ``alpha 2``.

The constants live in buffers, so they are stored in checkpoints and a resumed run does not recompute
them. Under DDP the first-step values are averaged over ranks (pass ``reduce``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

TERMS = ("adv", "feat", "vgg")
MODES = ("first_step", "fixed")


class LossNormalizer(nn.Module):
    """Combines ``{adv, feat, vgg, pen}`` loss terms into the generator's total loss.

    Args:
        mode: ``first_step`` (paper) or ``fixed`` (released code).
        weights: multipliers of the (normalised) ``adv``, ``feat`` and ``vgg`` terms.
        alpha: penalty weight, a float or ``"auto"``.
        alpha_target: ``alpha * L_pen`` at the first step when ``alpha="auto"``.
    """

    def __init__(
        self,
        mode: str = "first_step",
        weights: Mapping[str, float] | None = None,
        alpha: float | str = "auto",
        alpha_target: float = 0.1,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normaliser mode must be one of {MODES}, got {mode!r}")
        weights = dict(weights or {"adv": 0.5, "feat": 0.5, "vgg": 1.0})
        if set(weights) != set(TERMS):
            raise ValueError(f"loss weights need exactly the keys {TERMS}, got {sorted(weights)}")
        if alpha != "auto" and not isinstance(alpha, int | float):
            raise ValueError(f"alpha must be a number or 'auto', got {alpha!r}")
        self.mode = mode
        self.weights = {k: float(v) for k, v in weights.items()}
        self.auto_alpha = alpha == "auto"
        self.alpha_target = alpha_target
        self.register_buffer("scales", torch.ones(len(TERMS)))  # M, N, O
        self.register_buffer("alpha", torch.tensor(0.0 if self.auto_alpha else float(alpha)))
        self.register_buffer("initialised", torch.tensor(not self.needs_first_step))

    @property
    def needs_first_step(self) -> bool:
        return self.mode == "first_step" or self.auto_alpha

    def initialise(
        self, terms: Mapping[str, torch.Tensor], reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    ) -> None:
        """Fix M, N, O (and an automatic alpha) from the first iteration's terms (detached)."""
        values = torch.stack([terms[k].detach() for k in (*TERMS, "pen")]).float()
        values = reduce(values).clamp_min(1e-12)
        if self.mode == "first_step":
            self.scales.copy_(values[:3])
        if self.auto_alpha:
            self.alpha.copy_(self.alpha_target / values[3])
        self.initialised.fill_(True)

    def forward(self, terms: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total generator loss and the normalised terms (``adv_norm``, ..., ``pen_weighted``)."""
        if not bool(self.initialised):
            raise RuntimeError("LossNormalizer used before initialise() on the first training step")
        normalised = {f"{k}_norm": terms[k] / self.scales[i] for i, k in enumerate(TERMS)}
        normalised["pen_weighted"] = self.alpha * terms["pen"]
        total = sum(self.weights[k] * normalised[f"{k}_norm"] for k in TERMS) + normalised["pen_weighted"]
        return total, normalised

    def extra_repr(self) -> str:
        return f"mode={self.mode}, weights={self.weights}, alpha={'auto' if self.auto_alpha else float(self.alpha)}"
