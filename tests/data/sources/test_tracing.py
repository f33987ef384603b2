"""The annotator's traced LA outline (csmri.data.sources.phantom.tracing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from csmri.data.sources.phantom.tracing import signed_distance, trace_outline


def disc(radius: float, size: int = 96) -> np.ndarray:
    rows, cols = np.indices((size, size)) - (size - 1) / 2
    return np.hypot(rows, cols) <= radius


def test_signed_distance_of_a_square_by_hand():
    mask = np.zeros((9, 9), dtype=bool)
    mask[2:7, 2:7] = True  # a 5 x 5 square
    sd = signed_distance(mask)
    assert sd[2, 4] == -0.5 and sd[3, 4] == -1.5 and sd[4, 4] == -2.5  # border, one in, the centre
    assert sd[1, 4] == 0.5 and sd[0, 4] == 1.5  # one and two rows outside an edge
    assert sd[1, 1] == pytest.approx(math.sqrt(2) - 0.5)  # diagonally off the corner


def test_zero_offset_keeps_the_label_and_negative_or_nan_is_refused():
    label = np.stack([disc(20), np.zeros((96, 96), bool)]).astype(np.uint8)
    assert trace_outline(label, np.random.default_rng(0), 0.0) is label
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tracing offset"):
            trace_outline(label, np.random.default_rng(0), bad)


def test_traced_outlines_wander_by_the_given_rms_without_bias():
    """On a disc of radius R, a slice's traced outline r(θ) = R + offset(θ), offset Gaussian at each θ with variance
    rms² (constant + harmonics): the mean absolute offset is rms·sqrt(2/π), estimated from the area between the
    outlines (≈ 2πR·mean|offset|); the constant part, estimated from the traced area (πr̄² = area, r̄ − R ≈ the
    constant), has std rms/sqrt(2) and mean 0. Empty slices stay empty."""
    radius, rms, slices = 24.0, 1.5, 300
    true = disc(radius)
    label = np.repeat(true[None], slices, axis=0).astype(np.uint8)
    label[0] = 0
    traced = trace_outline(label, np.random.default_rng(1), rms)
    assert not traced[0].any()
    traced, true_area = traced[1:].astype(bool), true.sum()
    changed = (traced ^ true).sum(axis=(1, 2))
    perimeter = 2 * math.pi * math.sqrt(true_area / math.pi)
    assert changed.mean() / perimeter == pytest.approx(rms * math.sqrt(2 / math.pi), rel=0.1)
    constant = np.sqrt(traced.sum(axis=(1, 2)) / math.pi) - math.sqrt(true_area / math.pi)
    assert abs(constant.mean()) < 3 * (rms / math.sqrt(2)) / math.sqrt(slices - 1)
    assert constant.std() == pytest.approx(rms / math.sqrt(2), rel=0.15)


def test_each_slice_draws_its_own_offset_and_a_slice_traced_to_nothing_keeps_its_label():
    small = np.repeat(disc(1.0)[None], 40, axis=0).astype(np.uint8)  # 5-pixel plus-shaped specks
    traced = trace_outline(small, np.random.default_rng(2), 4.0)
    assert all(traced[s].any() for s in range(40))
    assert len({traced[s].tobytes() for s in range(40)}) > 10
