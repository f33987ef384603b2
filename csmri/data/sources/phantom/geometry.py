"""Phantom geometry: the normalised pixel grid and anti-aliased star-shaped regions whose parameters vary with z.

Coordinates: ``x`` (columns) and ``y`` (rows) in ``[-1, 1]`` over the field of view, slice position
``z = (s + 0.5) / S`` in ``(0, 1)``. Fine details are sized in pixels at 128^2 and grow as ``sqrt(size / 128)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REFERENCE_SIZE = 128  # fine-detail lengths are in pixels at this size

Array = np.ndarray


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of a ``(n_slices, size, size)`` volume in normalised units."""

    size: int
    n_slices: int

    @property
    def pixel(self) -> float:
        """Pixel pitch in normalised units (the field of view spans 2)."""
        return 2.0 / self.size

    @property
    def detail_scale(self) -> float:
        """Fine-detail lengths in pixels grow as sqrt(size / 128)."""
        return math.sqrt(self.size / REFERENCE_SIZE)

    def fine(self, pixels_at_reference: float) -> float:
        """Normalised length of a fine detail that is ``pixels_at_reference`` px wide at 128^2."""
        return pixels_at_reference * self.detail_scale * self.pixel

    def z(self) -> Array:
        """Slice positions ``(S, 1, 1)`` float32 in (0, 1), 0 = superior."""
        return ((np.arange(self.n_slices, dtype=np.float32) + 0.5) / self.n_slices)[:, None, None]

    def coords(self, window: tuple[slice, slice]) -> tuple[Array, Array]:
        """``x`` of shape (1, 1, w) and ``y`` of shape (1, h, 1) for a window of rows and columns."""
        rows, cols = window
        centres = (np.arange(self.size, dtype=np.float32) + 0.5) * self.pixel - 1.0
        return centres[cols][None, None, :], centres[rows][None, :, None]

    def to_index(self, coordinate: float) -> float:
        """Continuous pixel index of a normalised coordinate (pixel centres at integers)."""
        return (coordinate + 1.0) / self.pixel - 0.5

    def window(self, low_x: float, high_x: float, low_y: float, high_y: float) -> tuple[slice, slice]:
        """Rows and columns covering the normalised box, padded by two pixels and clipped to the image."""

        def span(low: float, high: float) -> slice:
            start = max(0, math.floor(self.to_index(low)) - 2)
            stop = min(self.size, math.ceil(self.to_index(high)) + 3)
            return slice(start, max(start, stop))

        return span(low_y, high_y), span(low_x, high_x)


def soft_inside(distance: Array, pixel: float) -> Array:
    """Anti-aliased occupancy in [0, 1] from a signed distance (>0 inside): a one-pixel linear ramp."""
    return np.clip(0.5 + distance / pixel, 0.0, 1.0)


def harmonic_sum(coefficients: Array, direction: Array) -> Array:
    """``Re(sum_k c_k e^{i k theta})`` for k = 1..K.

    ``coefficients`` complex (K, S, 1, 1); ``direction`` = e^{i theta}, complex (S, h, w).
    """
    total = np.zeros(direction.shape, dtype=np.float32)
    power = np.ones_like(direction)
    for coefficient in coefficients:
        power = power * direction
        if coefficient.any():  # shape harmonics start at k = 2
            total += (coefficient * power).real
    return total


def angular_bump(direction: Array, angle: float, concentration: float) -> Array:
    """von Mises bump ``exp(kappa (cos(theta - angle) - 1))`` in (0, 1], peak 1 at ``angle``."""
    cos_gap = direction.real * math.cos(angle) + direction.imag * math.sin(angle)
    return np.exp(concentration * (cos_gap - 1.0))


@dataclass(frozen=True)
class Lobes:
    """Localised boundary protrusions (e.g. pulmonary-vein ostia of the LA), relative radius (L, S, 1, 1)."""

    angle: Array  # (L,) radians in the shape frame
    concentration: Array  # (L,) von Mises kappa
    height: Array  # (L, S, 1, 1) float32, relative to the semi-axes

    def radius(self, direction: Array) -> Array:
        total = np.zeros(direction.shape, dtype=np.float32)
        for angle, concentration, height in zip(self.angle, self.concentration, self.height, strict=True):
            total += height * angular_bump(direction, float(angle), float(concentration))
        return total


@dataclass(frozen=True)
class Polar:
    """Signed distance to a star shape's boundary (normalised, >0 inside) and e^{i theta} in its frame."""

    distance: Array
    direction: Array


@dataclass(frozen=True)
class StarShape:
    """Region ``rho < 1 + Re(sum_k c_k e^{ik theta})`` in a rotated frame scaled by the semi-axes.

    Per-slice parameters are float32 arrays of shape (S, 1, 1); ``harmonics`` is complex64 (K, S, 1, 1)
    for k = 1..K (k = 1 is left at 0 by the sampler, so shapes do not drift off their centre).
    """

    cx: Array
    cy: Array
    ax: Array
    ay: Array
    angle: float
    harmonics: Array
    lobes: Lobes | None = None

    def reach(self) -> float:
        """Upper bound of the distance from the centre to the boundary over all slices."""
        bulge = 1.0 + float(np.abs(self.harmonics).sum(axis=0).max())
        if self.lobes is not None:
            bulge += float(self.lobes.height.sum(axis=0).max())
        return float(np.maximum(self.ax, self.ay).max()) * bulge

    def window(self, grid: Grid, margin: float = 0.0) -> tuple[slice, slice]:
        """Pixel window containing the shape on every slice, grown by ``margin`` (normalised)."""
        reach = self.reach() + margin
        return grid.window(
            float(self.cx.min()) - reach,
            float(self.cx.max()) + reach,
            float(self.cy.min()) - reach,
            float(self.cy.max()) + reach,
        )

    def polar(self, grid: Grid, window: tuple[slice, slice]) -> Polar:
        """Signed distance (first order: radial gap over the elliptic radius' gradient) and direction."""
        x, y = grid.coords(window)
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u = (cos_a * dx + sin_a * dy) / self.ax
        v = (cos_a * dy - sin_a * dx) / self.ay
        rho = np.sqrt(u * u + v * v) + np.float32(1e-6)
        direction = ((u + 1j * v) / rho).astype(np.complex64)
        gradient = np.sqrt((u / self.ax) ** 2 + (v / self.ay) ** 2) / rho
        return Polar(distance=(self.boundary_radius(direction) - rho) / gradient, direction=direction)

    def boundary_radius(self, direction: Array) -> Array:
        """Relative radius of the boundary (1 for the bare ellipse, plus harmonics and lobes) in the directions
        ``direction = e^{i theta}`` (complex, frame of the shape, broadcast against the per-slice parameters)."""
        radius = 1.0 + harmonic_sum(self.harmonics, direction)
        if self.lobes is not None:
            radius += self.lobes.radius(direction)
        return radius

    def boundary_point(self, theta: float, inset: float = 0.0) -> tuple[Array, Array]:
        """Per-slice point ``(x, y)`` (S, 1, 1) on the boundary at frame angle ``theta``, moved ``inset`` inwards."""
        direction = np.full(self.cx.shape, np.complex64(complex(math.cos(theta), math.sin(theta))))
        radius = self.boundary_radius(direction)
        u = (self.ax * radius - inset) * math.cos(theta)
        v = (self.ay * radius - inset) * math.sin(theta)
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        return self.cx + cos_a * u - sin_a * v, self.cy + sin_a * u + cos_a * v
