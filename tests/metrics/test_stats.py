"""Paired Wilcoxon signed-rank test and mean ± std helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from csmri.metrics.stats import format_p, mean_std, paired_wilcoxon

A = [31.2, 29.8, 33.1, 30.4, 28.9, 32.7, 31.9, 30.0, 29.5, 33.4]
B = [30.1, 29.9, 31.5, 29.7, 28.2, 31.1, 31.0, 30.3, 28.4, 32.2]


def test_wilcoxon_matches_scipy() -> None:
    assert paired_wilcoxon(A, B) == pytest.approx(stats.wilcoxon(A, B).pvalue, rel=1e-12)
    assert paired_wilcoxon(B, A) == pytest.approx(paired_wilcoxon(A, B), rel=1e-12)  # two-sided
    rng = np.random.default_rng(0)
    a = rng.normal(size=80)
    b = a + rng.normal(0.2, 1.0, size=80)  # large sample: normal approximation
    assert paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon(a, b, alternative="two-sided").pvalue, rel=1e-12)
    ra, rb = rng.integers(1, 5, 40), rng.integers(1, 5, 40)  # ratings: ties and zero differences
    assert paired_wilcoxon(ra, rb) == pytest.approx(stats.wilcoxon(ra, rb).pvalue, rel=1e-12)


def test_wilcoxon_edge_cases() -> None:
    assert paired_wilcoxon(A, A) == 1.0  # all differences zero
    assert math.isnan(paired_wilcoxon([1.0], [2.0]))  # too few pairs
    assert math.isnan(paired_wilcoxon([], []))
    # pairs with a missing value on either side are dropped
    a = [*A, None, 5.0]
    b = [*B, 1.0, float("nan")]
    assert paired_wilcoxon(a, b) == pytest.approx(stats.wilcoxon(A, B).pvalue, rel=1e-12)
    # equal infinite pairs (two perfect slices) count as a zero difference
    assert paired_wilcoxon([*A, math.inf], [*B, math.inf]) == pytest.approx(
        stats.wilcoxon([*A, 0.0], [*B, 0.0]).pvalue, rel=1e-12
    )
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1.0, 2.0], [1.0])


def test_mean_std_population() -> None:
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=0))
    assert mean_std([1.0, None, float("nan"), 3.0]) == (2.0, 1.0)
    assert all(math.isnan(v) for v in mean_std([]))
    assert all(math.isnan(v) for v in mean_std([None]))


def test_format_p() -> None:
    assert format_p(None) == "—"
    assert format_p(float("nan")) == "n/a"
    assert format_p(1e-5) == "<0.001"
    assert format_p(0.0421) == "0.042"
    assert format_p(1.0) == "1.000"
