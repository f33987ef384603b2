"""Summary statistics and significance tests for per-slice (or per-rating) results.

* :func:`mean_std`: mean and **population** standard deviation (``ddof=0``, as ``numpy.std`` and the
  torchmetrics wrappers in :mod:`csmri.metrics.image`); ``nan`` entries (missing values, e.g. the Dice
  of a slice without the structure) are ignored, ``±inf`` propagate.
* :func:`paired_wilcoxon`: two-sided paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``), the
  test of the paper's Table 1 (significance at p < 0.01).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["mean_std", "paired_wilcoxon", "format_p"]


def _as_float_array(values: Iterable[float | None]) -> np.ndarray:
    """1-D float64 array; ``None`` becomes ``nan``."""
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """``(mean, std)`` of ``values`` with the population std (``ddof=0``).

    ``None``/``nan`` entries are skipped; ``(nan, nan)`` when nothing is left. An infinite entry
    makes the mean infinite (and the std ``nan``), as ``numpy`` does.
    """
    x = _as_float_array(values)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):
        return float(x.mean()), float(x.std(ddof=0))


def paired_wilcoxon(a: Iterable[float | None], b: Iterable[float | None], **kwargs) -> float:
    """Two-sided p-value of the paired Wilcoxon signed-rank test of ``a`` against ``b``.

    ``a[i]`` and ``b[i]`` are one pair (same slice, or same reader and slice). Pairs with a ``None``/
    ``nan`` on either side are dropped. Edge cases, decided before calling scipy:

    * fewer than 2 pairs left -> ``nan`` (no test possible);
    * all differences zero -> ``1.0`` (no evidence of a difference; scipy itself would fail or
      return ``nan`` here).

    Otherwise this is ``scipy.stats.wilcoxon(a, b, alternative="two-sided", **kwargs).pvalue`` with
    scipy's defaults (``zero_method="wilcox"``: zero differences are discarded; ``method="auto"``:
    exact distribution for small samples without ties/zeros, normal approximation otherwise).
    The test runs on the differences ``a - b``, with equal pairs (including ``inf == inf``, e.g. the
    PSNR of two perfect reconstructions) set to a zero difference; other infinite differences are
    valid (the test only uses their signs and ranks).
    """
    x, y = _as_float_array(a), _as_float_array(b)
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2:
        return float("nan")
    with np.errstate(invalid="ignore"):
        d = np.where(x == y, 0.0, x - y)
    if np.all(d == 0):
        return 1.0
    kwargs.setdefault("alternative", "two-sided")
    return float(_scipy_stats.wilcoxon(d, **kwargs).pvalue)


def format_p(p: float | None, threshold: float = 1e-3) -> str:
    """p-value for a table: ``"—"`` for None (the reference itself), ``"n/a"`` for nan,
    ``"<0.001"`` below ``threshold``, else 3 decimals (``"0.042"``)."""
    if p is None:
        return "—"
    if np.isnan(p):
        return "n/a"
    if p < threshold:
        return f"<{threshold:g}"
    return f"{p:.3f}"
