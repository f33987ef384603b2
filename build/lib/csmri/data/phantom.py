"""Synthetic LGE-cardiac MRI phantom: csmri's embedded default dataset (the paper's data are private).

Each "patient" is a seeded, deterministic 3-D stack of axial slices through a thorax: body outline with
subcutaneous fat and a muscle layer, dark lungs with small bright vessels, vertebra (bright rim, dark
core) and spinal canal, descending aorta, oesophagus, the heart (epicardial fat, nulled dark myocardium,
blood pools of the ventricles, right atrium and great vessels) and the **left atrium** (LA), whose thin
wall carries bright, irregular LGE-style enhancement (scar patches). Shapes are star-shaped regions
(ellipses with low-order Fourier boundary perturbations) whose parameters vary smoothly with ``z``.

Conventions
-----------
* Volumes are ``(S, H, W)`` = (slices, rows, columns), ``H == W == size`` (even, 32..1024).
* Radiological display: row 0 is anterior, column 0 is the patient's right; slice 0 is superior.
  In-plane coordinates ``x`` (columns) and ``y`` (rows) are normalised to ``[-1, 1]`` over the field of
  view, the slice position ``z = (s + 0.5) / S`` lies in ``(0, 1)``.
* Gross anatomy is defined in normalised units, so it looks the same at every ``size``. Fine detail
  (LA wall thickness and scar thickening, vessel calibre, fine texture grain, thin rims of the vertebra,
  aorta and oesophagus) is specified in pixels at 128^2
  and grows only as ``sqrt(size / 128)`` pixels, so it stays a few pixels wide at every size (as a
  real higher-resolution scan shows finer structure). Edges are anti-aliased by a one-pixel linear
  ramp of an approximate signed distance.
* ``image``: complex64, ``|image|`` normalised so the volume maximum is 1 (before noise), times
  ``exp(i * phase)`` with a smooth random phase of a few radians. ``noise_std`` is the standard
  deviation of the complex Gaussian noise in *each* of the real and imaginary parts.
* ``label``: uint8, 1 = left atrium = blood pool (cavity) **plus its wall** (everything inside the outer
  wall boundary), 0 elsewhere. The LA occupies a contiguous middle run of ~50-70 % of the slices; for
  ``n_slices >= 3`` the first and the last slice never contain it.

Dataset layout written by :func:`write_phantom_dataset` (``csmri-slices-v1``)::

    <root>/meta.json               {"format", "source", "size", "n_slices_per_patient", "seed",
                                    "noise_std", "splits": {"train", "val", "test"}, "label_names"}
    <root>/<split>/<patient_id>.h5 "image" complex64 (S,H,W), "label" uint8 (S,H,W), one slice per chunk;
                                   "keys" (S,) utf-8 "<patient_id>/<slice:03d>"; attrs["patient_id"]
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "PhantomVolume",
    "generate_patient",
    "generate_patient_tissues",
    "phantom_patient_id",
    "save_example_grid",
    "split_counts",
    "split_indices",
    "write_phantom_dataset",
]

DATASET_FORMAT = "csmri-slices-v1"
MIN_SIZE, MAX_SIZE = 32, 1024
REFERENCE_SIZE = 128  # fine-detail lengths below are in pixels at this size
PAPER_SPLIT = (24, 6, 7)  # train/val/test patients of the paper's 37

# Tissue magnitudes before texture, shading and normalisation (LGE-like: nulled myocardium, bright fat,
# enhanced atrial wall and scar brighter than the blood pool).
INTENSITY = {
    "fat": 0.62,
    "muscle": 0.22,
    "mediastinum": 0.55,
    "lung": 0.035,
    "bone_rim": 0.75,
    "marrow": 0.2,
    "csf": 0.07,
    "cord": 0.26,
    "vessel_wall": 0.12,
    "blood": 0.42,
    "epicardial_fat": 0.60,
    "heart_tissue": 0.15,
    "myocardium": 0.09,
    "oesophagus": 0.24,
    "la_wall": 0.70,
    "scar": 1.0,
}
OCCLUDED_TISSUES = ("lung", "myocardium", "la_wall", "la_cavity")  # visible fractions tracked while painting

Array = np.ndarray


@dataclass
class PhantomVolume:
    """One synthetic patient.

    ``image`` complex64 (S, H, W) with max magnitude ~1; ``label`` uint8 (S, H, W), 1 = left atrium
    (cavity + wall); ``patient_id`` e.g. ``"phantom_007"``.
    """

    image: np.ndarray
    label: np.ndarray
    patient_id: str


def phantom_patient_id(index: int) -> str:
    """Stable patient identifier, ``"phantom_007"`` for index 7."""
    return f"phantom_{index:03d}"


# --------------------------------------------------------------------------------------------------
# Geometry primitives
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
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


def _soft_inside(distance: Array, pixel: float) -> Array:
    """Anti-aliased occupancy in [0, 1] from a signed distance (>0 inside): a one-pixel linear ramp."""
    return np.clip(0.5 + distance / pixel, 0.0, 1.0)


def _harmonic_sum(coefficients: Array, direction: Array) -> Array:
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


def _angular_bump(direction: Array, angle: float, concentration: float) -> Array:
    """von Mises bump ``exp(kappa (cos(theta - angle) - 1))`` in (0, 1], peak 1 at ``angle``."""
    cos_gap = direction.real * math.cos(angle) + direction.imag * math.sin(angle)
    return np.exp(concentration * (cos_gap - 1.0))


@dataclass(frozen=True)
class _Lobes:
    """Localised boundary protrusions (e.g. pulmonary-vein ostia of the LA), relative radius (L, S, 1, 1)."""

    angle: Array  # (L,) radians in the shape frame
    concentration: Array  # (L,) von Mises kappa
    height: Array  # (L, S, 1, 1) float32, relative to the semi-axes

    def radius(self, direction: Array) -> Array:
        total = np.zeros(direction.shape, dtype=np.float32)
        for angle, concentration, height in zip(self.angle, self.concentration, self.height, strict=True):
            total += height * _angular_bump(direction, float(angle), float(concentration))
        return total


@dataclass(frozen=True)
class _Polar:
    """Signed distance to a star shape's boundary (normalised, >0 inside) and e^{i theta} in its frame."""

    distance: Array
    direction: Array


@dataclass(frozen=True)
class _StarShape:
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
    lobes: _Lobes | None = None

    def reach(self) -> float:
        """Upper bound of the distance from the centre to the boundary over all slices."""
        bulge = 1.0 + float(np.abs(self.harmonics).sum(axis=0).max())
        if self.lobes is not None:
            bulge += float(self.lobes.height.sum(axis=0).max())
        return float(np.maximum(self.ax, self.ay).max()) * bulge

    def window(self, grid: _Grid, margin: float = 0.0) -> tuple[slice, slice]:
        """Pixel window containing the shape on every slice, grown by ``margin`` (normalised)."""
        reach = self.reach() + margin
        return grid.window(
            float(self.cx.min()) - reach,
            float(self.cx.max()) + reach,
            float(self.cy.min()) - reach,
            float(self.cy.max()) + reach,
        )

    def polar(self, grid: _Grid, window: tuple[slice, slice]) -> _Polar:
        """Signed distance (first order: radial gap over the elliptic radius' gradient) and direction."""
        x, y = grid.coords(window)
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u = (cos_a * dx + sin_a * dy) / self.ax
        v = (cos_a * dy - sin_a * dx) / self.ay
        rho = np.sqrt(u * u + v * v) + np.float32(1e-6)
        direction = ((u + 1j * v) / rho).astype(np.complex64)
        gradient = np.sqrt((u / self.ax) ** 2 + (v / self.ay) ** 2) / rho
        boundary = 1.0 + _harmonic_sum(self.harmonics, direction)
        if self.lobes is not None:
            boundary += self.lobes.radius(direction)
        return _Polar(distance=(boundary - rho) / gradient, direction=direction)


class _Canvas:
    """Magnitude volume painted back to front with soft occupancies; tracks visible tissue fractions."""

    def __init__(self, grid: _Grid) -> None:
        shape = (grid.n_slices, grid.size, grid.size)
        self.grid = grid
        self.intensity = np.zeros(shape, dtype=np.float32)
        self.fraction = {name: np.zeros(shape, dtype=np.float32) for name in OCCLUDED_TISSUES}
        self.fraction["body"] = np.zeros(shape, dtype=np.float32)  # set once; inner tissues do not occlude it

    def paint(self, window: tuple[slice, slice], alpha: Array, value: Array | float, tissue: str | None = None) -> None:
        """Composite ``value`` with occupancy ``alpha`` (broadcastable to (S, h, w)) over the window."""
        region = (slice(None), *window)
        alpha = np.broadcast_to(alpha, self.intensity[region].shape)
        target = self.intensity[region]
        target += alpha * (value - target)
        for name in OCCLUDED_TISSUES:
            visible = self.fraction[name][region]
            if name == tissue:
                visible += alpha * (1.0 - visible)
            else:
                visible *= 1.0 - alpha


# --------------------------------------------------------------------------------------------------
# Random anatomy
# --------------------------------------------------------------------------------------------------


class _Sampler:
    """Draws patient parameters: scalars, smooth functions of z, boundary harmonics (size-independent)."""

    def __init__(self, rng: np.random.Generator, z: Array) -> None:
        self.rng = rng
        self.z = z.astype(np.float64)

    def scalar(self, nominal: float, spread: float) -> float:
        """``nominal + spread * N(0, 1)``."""
        return nominal + spread * float(self.rng.normal())

    def along_z(self, base: float, amplitude: float, n_terms: int = 3) -> Array:
        """Smooth random function of z, (S, 1, 1) float32: ``base`` + a low-order Fourier series.

        The series has a standard deviation of about ``amplitude``.
        """
        weights = self.rng.normal(size=(2, n_terms)) / np.sqrt(n_terms)
        series = np.zeros_like(self.z)
        for k in range(1, n_terms + 1):
            phase = math.pi * k * self.z
            series += (weights[0, k - 1] * np.cos(phase) + weights[1, k - 1] * np.sin(phase)) / k**0.5
        return (base + amplitude * series).astype(np.float32)

    def harmonics(self, amplitude: float, n_terms: int = 5, drift: float = 0.35, first: int = 2) -> Array:
        """Complex64 (n_terms, S, 1, 1) boundary coefficients, ~amplitude / k, drifting smoothly with z."""
        coefficients = np.zeros((n_terms, *self.z.shape), dtype=np.complex64)
        for k in range(first, n_terms + 1):
            scale = amplitude / k
            static = complex(*self.rng.normal(size=2)) * scale
            moving = self.along_z(0.0, drift * scale) + 1j * self.along_z(0.0, drift * scale)
            coefficients[k - 1] = static + moving
        return coefficients

    def star(
        self,
        centre: tuple[float, float],
        axes: tuple[float, float],
        angle: float = 0.0,
        position_jitter: float = 0.015,
        size_jitter: float = 0.06,
        roughness: float = 0.04,
        profile: Array | float = 1.0,
    ) -> _StarShape:
        """Star shape near ``centre`` with semi-axes ``axes`` scaled per slice by ``profile``."""
        cx = self.along_z(self.scalar(centre[0], position_jitter), position_jitter)
        cy = self.along_z(self.scalar(centre[1], position_jitter), position_jitter)
        growth = self.along_z(1.0, size_jitter * 0.5) * np.float32(1.0 + size_jitter * self.rng.normal())
        scale = np.maximum(growth * np.asarray(profile, dtype=np.float32), 1e-3)
        return _StarShape(
            cx=cx,
            cy=cy,
            ax=(axes[0] * scale).astype(np.float32),
            ay=(axes[1] * scale).astype(np.float32),
            angle=self.scalar(angle, 0.08),
            harmonics=self.harmonics(roughness),
        )


def _smoothstep(edge0: float, edge1: float, z: Array) -> Array:
    """Cubic ramp from 0 (z <= edge0) to 1 (z >= edge1); edges may be reversed for a falling ramp."""
    t = np.clip((z - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


@dataclass(frozen=True)
class _ScarPatches:
    """Enhancement patches on the LA wall: von Mises bumps in wall angle times Gaussians in z."""

    angle: Array  # (P,) radians, in the LA frame
    concentration: Array  # (P,) von Mises kappa (larger = narrower)
    z_centre: Array  # (P,)
    z_width: Array  # (P,)
    strength: Array  # (P,)

    def enhancement(self, direction: Array, z: Array) -> Array:
        """Scar strength >= 0 at each pixel of the LA frame given e^{i theta}; (S, h, w) float32."""
        total = np.zeros(direction.shape, dtype=np.float32)
        for p in range(len(self.angle)):
            along_z = self.strength[p] * np.exp(-0.5 * ((z - self.z_centre[p]) / self.z_width[p]) ** 2)
            bump = _angular_bump(direction, self.angle[p], self.concentration[p])
            total += along_z.astype(np.float32) * bump
        return total


@dataclass(frozen=True)
class _LeftAtrium:
    """LA cavity shape, its wall (thickness in pixels at 128^2 plus harmonics) and scar patches."""

    cavity: _StarShape
    present: Array  # (S, 1, 1) bool
    wall_pixels: float
    wall_harmonics: Array
    scar_thickening_pixels: float
    scars: _ScarPatches


@dataclass(frozen=True)
class _VesselTracks:
    """Small pulmonary vessels as straight tracks through a lung, visible over a z-interval.

    Positions are polar in the lung's elliptic frame (``radial`` in (0, 1)), linear in z.
    """

    lung: Array  # (V,) 0 = right lung (image left), 1 = left lung
    angle: Array
    angle_slope: Array
    radial: Array
    radial_slope: Array
    z_low: Array
    z_high: Array
    radius_pixels: Array  # Gaussian sigma across the vessel, pixels at 128^2
    elongation: Array  # >= 1, sigma along / sigma across (in-plane course)
    orientation: Array
    brightness: Array


@dataclass(frozen=True)
class _Anatomy:
    """All random parameters of one patient (independent of the image size)."""

    body: _StarShape
    fat_thickness: float
    fat_harmonics: Array
    cavity: _StarShape
    lungs: tuple[_StarShape, _StarShape]
    paraspinal: _StarShape
    vertebra: _StarShape
    canal: _StarShape
    cord: _StarShape
    aorta: _StarShape
    oesophagus: _StarShape
    heart: _StarShape
    epicardial_fat_thickness: float
    ascending_aorta: _StarShape
    pulmonary_trunk: _StarShape
    right_atrium: _StarShape
    right_ventricle: _StarShape
    left_ventricle: _StarShape
    lv_myocardium_thickness: Array  # (S, 1, 1), shrinks with the ventricle
    papillary_muscles: tuple[_StarShape, ...]
    coronary_arteries: tuple[_StarShape, ...]
    left_atrium: _LeftAtrium
    vessels: _VesselTracks
    phase_coefficients: Array  # (6, S, 1, 1): 1, x, y, x^2, xy, y^2 (radians)
    phase_bump: tuple[float, float, float, float]  # Gaussian phase bump: amplitude (rad), x, y, width
    shading: tuple[float, float, float]  # receive-coil shading exponents for x, y, x^2 + y^2


def _left_atrium_slices(rng: np.random.Generator, n_slices: int) -> tuple[int, int]:
    """First and last slice (inclusive) of the LA: a contiguous middle run of ~50-70 % of the slices."""
    count = int(round(rng.uniform(0.5, 0.7) * n_slices))
    count = min(max(count, 1), max(n_slices - 2, 1))
    leftover = n_slices - count
    if leftover >= 2:
        start = 1 + int(round(rng.uniform(0.25, 0.75) * (leftover - 2)))
    else:
        start = leftover // 2
    return start, start + count - 1


def _sample_vein_ostia(rng: np.random.Generator, z: Array, z_first: float, z_last: float) -> _Lobes:
    """Two to four pulmonary-vein ostia: lateral-posterior LA protrusions that come and go along z."""
    count = int(rng.integers(2, 5))
    # alternate the patient's left (image right, theta ~ 0) and right veins, tilted posteriorly (+y)
    lateral_posterior = np.resize([0.45, math.pi - 0.45], count)
    peaks = rng.uniform(z_first, z_last, count)
    widths = rng.uniform(0.04, 0.1, count)
    heights = rng.uniform(0.15, 0.4, count)
    profiles = np.exp(-0.5 * ((z[None] - peaks[:, None, None, None]) / widths[:, None, None, None]) ** 2)
    return _Lobes(
        angle=lateral_posterior + rng.normal(0.0, 0.3, count),
        concentration=rng.uniform(6.0, 14.0, count),
        height=(heights[:, None, None, None] * profiles).astype(np.float32),
    )


def _circle(cx: Array, cy: Array, radius: Array | float) -> _StarShape:
    """A circle with per-slice centre (S, 1, 1) and radius."""
    radius = np.maximum(np.broadcast_to(np.asarray(radius, dtype=np.float32), cx.shape), 1e-4)
    return _StarShape(
        cx=cx.astype(np.float32),
        cy=cy.astype(np.float32),
        ax=radius,
        ay=radius.copy(),
        angle=0.0,
        harmonics=np.zeros((1, *cx.shape), dtype=np.complex64),
    )


def _boundary_point(shape: _StarShape, theta: float, inset: float = 0.0) -> tuple[Array, Array]:
    """Per-slice point on the boundary of ``shape`` at frame angle ``theta``, moved ``inset`` inwards."""
    direction = np.complex64(complex(math.cos(theta), math.sin(theta)))
    radius = 1.0 + _harmonic_sum(shape.harmonics, np.full(shape.cx.shape, direction))
    u = (shape.ax * radius - inset) * math.cos(theta)
    v = (shape.ay * radius - inset) * math.sin(theta)
    cos_a, sin_a = math.cos(shape.angle), math.sin(shape.angle)
    return shape.cx + cos_a * u - sin_a * v, shape.cy + sin_a * u + cos_a * v


def _sample_papillary_muscles(s: _Sampler, ventricle: _StarShape, profile: Array) -> tuple[_StarShape, ...]:
    """Two small dark papillary muscles inside the LV blood pool, following the ventricle."""
    muscles = []
    for theta in (s.scalar(0.6, 0.3), s.scalar(2.6, 0.3)):
        cx, cy = _boundary_point(ventricle, theta, inset=0.0)
        mix = s.scalar(0.45, 0.08)  # fraction of the way from the boundary to the centre
        radius = np.float32(s.scalar(0.017, 0.003)) * profile
        muscles.append(_circle(cx + mix * (ventricle.cx - cx), cy + mix * (ventricle.cy - cy), radius))
    return tuple(muscles)


def _sample_coronary_arteries(s: _Sampler, heart: _StarShape, fat_thickness: float) -> tuple[_StarShape, ...]:
    """Three to five small vessels running in the epicardial fat band."""
    count = int(s.rng.integers(3, 6))
    angles = s.rng.uniform(0.0, 2.0 * math.pi, count)
    return tuple(
        _circle(
            *_boundary_point(heart, float(theta), inset=0.5 * fat_thickness),
            s.scalar(0.013, 0.002) * np.ones_like(heart.cx),
        )
        for theta in angles
    )


def _sample_left_atrium(sampler: _Sampler, n_slices: int) -> _LeftAtrium:
    """LA posterior in the heart: size peaks mid-run, vein ostia, a 1-3 px wall (128^2) and scar patches."""
    first, last = _left_atrium_slices(sampler.rng, n_slices)
    index = np.arange(n_slices, dtype=np.float32)[:, None, None]
    local = (index - 0.5 * (first + last)) / (0.5 * (last - first + 1))  # in (-1, 1) on LA slices
    profile = 0.3 + 0.7 * np.sqrt(np.clip(1.0 - local**2, 0.0, 1.0))
    cavity = sampler.star(
        centre=(0.03, 0.12),
        axes=(0.15, 0.09),
        angle=0.15,
        position_jitter=0.015,
        size_jitter=0.1,
        roughness=0.08,
        profile=profile,
    )
    rng = sampler.rng
    z_first, z_last = (first + 0.5) / n_slices, (last + 0.5) / n_slices
    cavity = replace(cavity, lobes=_sample_vein_ostia(rng, sampler.z, z_first, z_last))
    n_scars = int(rng.integers(5, 12))
    scars = _ScarPatches(
        angle=rng.uniform(0.0, 2.0 * math.pi, n_scars),
        concentration=rng.uniform(8.0, 60.0, n_scars),
        z_centre=rng.uniform(z_first, z_last, n_scars),
        z_width=rng.uniform(0.03, 0.1, n_scars),
        strength=rng.uniform(0.5, 1.5, n_scars),
    )
    return _LeftAtrium(
        cavity=cavity,
        present=(index >= first) & (index <= last),
        wall_pixels=sampler.scalar(1.4, 0.15),
        wall_harmonics=sampler.harmonics(0.45, n_terms=7, drift=0.6, first=1),
        scar_thickening_pixels=float(rng.uniform(0.6, 1.2)),
        scars=scars,
    )


def _sample_vessels(rng: np.random.Generator, count: int = 70) -> _VesselTracks:
    """``count`` vessel tracks, each visible over a random z-interval; ~1/3 run in-plane (short tubes)."""
    half_length = rng.uniform(0.08, 0.4, count)
    centre = rng.uniform(-0.1, 1.1, count)
    elongated = rng.random(count) < 0.35
    return _VesselTracks(
        lung=rng.integers(0, 2, count),
        angle=rng.uniform(0.0, 2.0 * math.pi, count),
        angle_slope=rng.normal(0.0, 0.8, count),
        radial=np.sqrt(rng.uniform(0.02, 0.7, count)),
        radial_slope=rng.normal(0.0, 0.3, count),
        z_low=centre - half_length,
        z_high=centre + half_length,
        radius_pixels=np.exp(rng.uniform(math.log(0.55), math.log(1.3), count)),
        elongation=np.where(elongated, rng.uniform(1.8, 4.0, count), 1.0),
        orientation=rng.uniform(0.0, math.pi, count),
        brightness=rng.uniform(0.3, 0.65, count),
    )


def _sample_anatomy(rng: np.random.Generator, n_slices: int) -> _Anatomy:
    """Draw one patient's anatomy; every draw is independent of the image size."""
    z = _Grid(REFERENCE_SIZE, n_slices).z()
    s = _Sampler(rng, z)
    body = s.star((0.0, 0.05), (0.88, 0.64), 0.0, position_jitter=0.01, size_jitter=0.04, roughness=0.035)
    cavity = s.star((0.0, 0.0), (0.76, 0.5), 0.0, position_jitter=0.01, size_jitter=0.04, roughness=0.03)
    lungs = (
        s.star((-0.42, 0.0), (0.36, 0.5), -0.15, size_jitter=0.06, roughness=0.06),
        s.star((0.46, 0.02), (0.32, 0.48), 0.15, size_jitter=0.06, roughness=0.06),
    )
    great_vessels = _smoothstep(0.5, 0.2, z)
    ventricles = _smoothstep(0.25, 0.65, z)
    heart = s.star(
        (0.08, -0.1),
        (0.4, 0.3),
        -0.5,
        position_jitter=0.02,
        size_jitter=0.06,
        roughness=0.04,
        profile=0.8 + 0.2 * _smoothstep(0.0, 0.5, z),
    )
    epicardial_fat_thickness = s.scalar(0.025, 0.005)
    left_ventricle = s.star((0.24, -0.11), (0.12, 0.1), -0.5, roughness=0.05, profile=ventricles)
    return _Anatomy(
        body=body,
        fat_thickness=s.scalar(0.055, 0.01),
        fat_harmonics=s.harmonics(0.35, n_terms=5, first=1),
        cavity=cavity,
        lungs=lungs,
        paraspinal=s.star((0.0, 0.63), (0.3, 0.13), 0.0, position_jitter=0.01, roughness=0.05),
        vertebra=s.star((0.0, 0.5), (0.1, 0.085), 0.0, position_jitter=0.008, roughness=0.03),
        canal=s.star((0.0, 0.64), (0.04, 0.035), 0.0, position_jitter=0.005, roughness=0.03),
        cord=s.star((0.0, 0.64), (0.022, 0.02), 0.0, position_jitter=0.003, roughness=0.02),
        aorta=s.star((0.14, 0.34), (0.062, 0.062), 0.0, position_jitter=0.01, roughness=0.02),
        oesophagus=s.star((0.03, 0.285), (0.032, 0.026), 0.0, position_jitter=0.006, roughness=0.04),
        heart=heart,
        epicardial_fat_thickness=epicardial_fat_thickness,
        ascending_aorta=s.star((-0.05, -0.12), (0.075, 0.075), 0.0, roughness=0.02, profile=great_vessels),
        pulmonary_trunk=s.star((0.12, -0.24), (0.08, 0.07), 0.3, roughness=0.03, profile=_smoothstep(0.4, 0.1, z)),
        right_atrium=s.star((-0.22, -0.02), (0.11, 0.11), 0.0, roughness=0.06, profile=_smoothstep(0.15, 0.4, z)),
        right_ventricle=s.star((-0.03, -0.25), (0.18, 0.08), -0.35, roughness=0.06, profile=ventricles),
        left_ventricle=left_ventricle,
        lv_myocardium_thickness=s.scalar(0.055, 0.006) * ventricles,
        papillary_muscles=_sample_papillary_muscles(s, left_ventricle, ventricles),
        coronary_arteries=_sample_coronary_arteries(s, heart, epicardial_fat_thickness),
        left_atrium=_sample_left_atrium(s, n_slices),
        vessels=_sample_vessels(rng),
        phase_coefficients=np.stack(
            [s.along_z(s.scalar(0.0, 1.5), 0.3)]
            + [s.along_z(s.scalar(0.0, 1.2), 0.3) for _ in range(2)]
            + [s.along_z(s.scalar(0.0, 1.0), 0.25) for _ in range(3)]
        ),
        phase_bump=(s.scalar(0.0, 1.0), s.scalar(0.0, 0.3), s.scalar(0.0, 0.3), float(rng.uniform(0.2, 0.5))),
        shading=(s.scalar(0.0, 0.12), s.scalar(-0.1, 0.12), s.scalar(0.0, 0.1)),
    )


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _unit_noise_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> Array:
    """Gaussian-smoothed white noise rescaled to zero mean and unit std, float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


@dataclass(frozen=True)
class _Textures:
    """Unit-variance random fields (S, H, W): tissue heterogeneity (physical scale) and fine grain."""

    coarse: Array
    fine: Array


def _sample_textures(rng: np.random.Generator, grid: _Grid) -> _Textures:
    """Coarse field: sigma 0.018 (normalised, ~1.2 px at 128^2); fine: 0.6 px at 128^2, sqrt-scaled."""
    shape = (grid.n_slices, grid.size, grid.size)
    coarse_sigma = 0.018 / grid.pixel  # ~1.2 px at 128^2, anatomy-scaled
    fine_sigma = 0.6 * grid.detail_scale
    return _Textures(
        coarse=_unit_noise_field(rng, shape, (0.7, coarse_sigma, coarse_sigma)),
        fine=_unit_noise_field(rng, shape, (0.4, fine_sigma, fine_sigma)),
    )


def _paint_filled(
    canvas: _Canvas, shape: _StarShape, value: float, tissue: str | None = None, clip_to: Array | None = None
) -> None:
    """Paint the interior of ``shape``; ``clip_to`` (full-size occupancy) limits it to another region."""
    window = shape.window(canvas.grid)
    alpha = _soft_inside(shape.polar(canvas.grid, window).distance, canvas.grid.pixel)
    if clip_to is not None:
        alpha = alpha * clip_to[(slice(None), *window)]
    canvas.paint(window, alpha, value, tissue)


def _paint_ring(
    canvas: _Canvas,
    shape: _StarShape,
    thickness: float,
    rim: float,
    core: float,
    rim_tissue: str | None = None,
    core_tissue: str | None = None,
) -> None:
    """Paint ``shape`` with a rim of ``thickness`` (normalised, inside the boundary) around a core."""
    window = shape.window(canvas.grid)
    distance = shape.polar(canvas.grid, window).distance
    canvas.paint(window, _soft_inside(distance, canvas.grid.pixel), rim, rim_tissue)
    canvas.paint(window, _soft_inside(distance - thickness, canvas.grid.pixel), core, core_tissue)


def _paint_body(canvas: _Canvas, anatomy: _Anatomy) -> Array:
    """Body outline: subcutaneous fat of varying thickness over the muscle layer; then the thoracic cavity.

    Returns the occupancy (S, H, W) of the region inside the subcutaneous fat.
    """
    grid = canvas.grid
    window = anatomy.body.window(grid)
    polar = anatomy.body.polar(grid, window)
    outline = _soft_inside(polar.distance, grid.pixel)
    canvas.paint(window, outline, INTENSITY["fat"])
    canvas.fraction["body"][(slice(None), *window)] = outline
    fat = anatomy.fat_thickness * (1.0 + _harmonic_sum(anatomy.fat_harmonics, polar.direction))
    under_fat = np.zeros_like(canvas.intensity)
    under_fat[(slice(None), *window)] = _soft_inside(polar.distance - np.maximum(fat, grid.pixel), grid.pixel)
    canvas.paint(window, under_fat[(slice(None), *window)], INTENSITY["muscle"])
    _paint_filled(canvas, anatomy.cavity, INTENSITY["mediastinum"])
    return under_fat


def _paint_lungs(canvas: _Canvas, anatomy: _Anatomy) -> None:
    """Lungs, clipped to the thoracic cavity."""
    grid = canvas.grid
    window = anatomy.cavity.window(grid)
    cavity = np.zeros_like(canvas.intensity)
    cavity[(slice(None), *window)] = _soft_inside(anatomy.cavity.polar(grid, window).distance, grid.pixel)
    for lung in anatomy.lungs:
        _paint_filled(canvas, lung, INTENSITY["lung"], "lung", clip_to=cavity)


def _paint_posterior_mediastinum(canvas: _Canvas, anatomy: _Anatomy, under_fat: Array) -> None:
    """Paraspinal muscle, vertebra (bright rim, dark core), spinal canal, descending aorta, oesophagus."""
    grid = canvas.grid
    _paint_filled(canvas, anatomy.paraspinal, INTENSITY["muscle"], clip_to=under_fat)
    _paint_ring(canvas, anatomy.vertebra, grid.fine(2.2), INTENSITY["bone_rim"], INTENSITY["marrow"])
    _paint_filled(canvas, anatomy.canal, INTENSITY["csf"])
    _paint_filled(canvas, anatomy.cord, INTENSITY["cord"])
    _paint_ring(canvas, anatomy.aorta, grid.fine(1.0), INTENSITY["vessel_wall"], INTENSITY["blood"])
    _paint_ring(canvas, anatomy.oesophagus, grid.fine(1.5), INTENSITY["oesophagus"], INTENSITY["csf"])


def _paint_heart(canvas: _Canvas, anatomy: _Anatomy) -> None:
    """Pericardial envelope with epicardial fat, great vessels, right heart and the left ventricle."""
    grid = canvas.grid
    _paint_ring(
        canvas,
        anatomy.heart,
        anatomy.epicardial_fat_thickness,
        INTENSITY["epicardial_fat"],
        INTENSITY["heart_tissue"],
    )
    for artery in anatomy.coronary_arteries:
        _paint_filled(canvas, artery, INTENSITY["blood"])
    for chamber in (anatomy.ascending_aorta, anatomy.pulmonary_trunk):
        _paint_ring(canvas, chamber, grid.fine(1.0), INTENSITY["vessel_wall"], INTENSITY["blood"])
    for chamber in (anatomy.right_atrium, anatomy.right_ventricle):
        _paint_filled(canvas, chamber, INTENSITY["blood"])
    lv = anatomy.left_ventricle
    window = lv.window(grid, margin=float(anatomy.lv_myocardium_thickness.max()))
    distance = lv.polar(grid, window).distance
    canvas.paint(
        window,
        _soft_inside(distance + anatomy.lv_myocardium_thickness, grid.pixel),
        INTENSITY["myocardium"],
        "myocardium",
    )
    canvas.paint(window, _soft_inside(distance, grid.pixel), INTENSITY["blood"])
    for muscle in anatomy.papillary_muscles:
        _paint_filled(canvas, muscle, INTENSITY["myocardium"], "myocardium")


def _paint_left_atrium(canvas: _Canvas, anatomy: _Anatomy, textures: _Textures, z: Array) -> None:
    """LA wall (bright, thickened and brighter at irregular scar patches) around the blood pool."""
    grid = canvas.grid
    la = anatomy.left_atrium
    max_wall = grid.fine(
        la.wall_pixels * (1.0 + float(np.abs(la.wall_harmonics).sum(axis=0).max())) + la.scar_thickening_pixels * 2.0
    )
    window = la.cavity.window(grid, margin=max_wall)
    polar = la.cavity.polar(grid, window)
    region = (slice(None), *window)
    scar = la.scars.enhancement(polar.direction, z)
    irregular = scar * (0.8 + 0.45 * textures.coarse[region] + 0.25 * textures.fine[region])
    scar_level = np.clip(irregular, 0.0, 1.0)
    wall_variation = np.clip(1.0 + _harmonic_sum(la.wall_harmonics, polar.direction), 0.55, 2.0)
    thickness = grid.fine(la.wall_pixels) * wall_variation + grid.fine(la.scar_thickening_pixels) * scar_level
    present = la.present.astype(np.float32)
    wall_value = INTENSITY["la_wall"] + (INTENSITY["scar"] - INTENSITY["la_wall"]) * scar_level
    outer = present * _soft_inside(polar.distance + thickness, grid.pixel)
    canvas.paint(window, outer, wall_value, "la_wall")
    inner = present * _soft_inside(polar.distance, grid.pixel)
    canvas.paint(window, inner, INTENSITY["blood"], "la_cavity")


def _vessel_position(
    tracks: _VesselTracks, lungs: tuple[_StarShape, _StarShape], v: int, s: int, z: float
) -> tuple[float, float]:
    """Centre of vessel ``v`` on slice ``s`` (normalised), from its polar position in the lung frame."""
    lung = lungs[int(tracks.lung[v])]
    theta = tracks.angle[v] + tracks.angle_slope[v] * z
    radial = np.clip(tracks.radial[v] + tracks.radial_slope[v] * (z - 0.5), 0.05, 0.9)
    u = radial * math.cos(theta) * float(lung.ax[s, 0, 0])
    w = radial * math.sin(theta) * float(lung.ay[s, 0, 0])
    cos_a, sin_a = math.cos(lung.angle), math.sin(lung.angle)
    return float(lung.cx[s, 0, 0]) + cos_a * u - sin_a * w, float(lung.cy[s, 0, 0]) + sin_a * u + cos_a * w


def _paint_vessels(canvas: _Canvas, anatomy: _Anatomy, z: Array) -> None:
    """Small bright pulmonary vessels (anisotropic Gaussian dots/short tubes), only where lung is visible."""
    grid, tracks = canvas.grid, anatomy.vessels
    for s, z_s in enumerate(z[:, 0, 0].tolist()):
        visible = np.flatnonzero((tracks.z_low <= z_s) & (z_s <= tracks.z_high))
        for v in visible:
            x0, y0 = _vessel_position(tracks, anatomy.lungs, int(v), s, z_s)
            across = tracks.radius_pixels[v] * grid.detail_scale
            along = across * tracks.elongation[v]
            half = int(math.ceil(3.0 * along)) + 1
            col, row = grid.to_index(x0), grid.to_index(y0)
            rows = slice(max(0, int(row) - half), min(grid.size, int(row) + half + 2))
            cols = slice(max(0, int(col) - half), min(grid.size, int(col) + half + 2))
            if rows.start >= rows.stop or cols.start >= cols.stop:
                continue
            dy = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] - row
            dx = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] - col
            cos_o, sin_o = math.cos(tracks.orientation[v]), math.sin(tracks.orientation[v])
            d_along = cos_o * dx + sin_o * dy
            d_across = cos_o * dy - sin_o * dx
            profile = np.exp(-0.5 * ((d_along / along) ** 2 + (d_across / across) ** 2)).astype(np.float32)
            lung = canvas.fraction["lung"][s, rows, cols]
            target = canvas.intensity[s, rows, cols]
            alpha = profile * lung
            target += alpha * (tracks.brightness[v] - target)
            lung *= 1.0 - alpha


def _shading_and_texture(canvas: _Canvas, anatomy: _Anatomy, textures: _Textures) -> Array:
    """Magnitude times smooth receive-coil shading and multiplicative tissue texture (float32, >= 0)."""
    x, y = canvas.grid.coords((slice(None), slice(None)))
    sx, sy, sr = anatomy.shading
    shading = np.exp(sx * x + sy * y + sr * (x * x + y * y)).astype(np.float32)
    texture = 1.0 + 0.10 * textures.coarse + 0.07 * textures.fine
    return np.maximum(canvas.intensity * shading * texture, 0.0)


def _background_phase(anatomy: _Anatomy, grid: _Grid) -> Array:
    """Smooth phase (radians, range of a few rad over the body): a quadratic polynomial in x, y whose
    coefficients vary smoothly with z, plus one Gaussian bump (a local off-resonance)."""
    x, y = grid.coords((slice(None), slice(None)))
    basis = (np.float32(1.0), x, y, x * x, x * y, y * y)
    phase = np.zeros((grid.n_slices, grid.size, grid.size), dtype=np.float32)
    for coefficient, term in zip(anatomy.phase_coefficients, basis, strict=True):
        phase += coefficient * term
    amplitude, bump_x, bump_y, width = anatomy.phase_bump
    phase += np.float32(amplitude) * np.exp(-((x - bump_x) ** 2 + (y - bump_y) ** 2) / (2.0 * width**2))
    return phase


def _render(anatomy: _Anatomy, grid: _Grid, texture_rng: np.random.Generator) -> tuple[Array, _Canvas]:
    """Magnitude volume (float32, un-normalised) and the canvas with the tracked tissue fractions."""
    z = grid.z()
    canvas = _Canvas(grid)
    textures = _sample_textures(texture_rng, grid)
    under_fat = _paint_body(canvas, anatomy)
    _paint_lungs(canvas, anatomy)
    _paint_posterior_mediastinum(canvas, anatomy, under_fat)
    _paint_heart(canvas, anatomy)
    _paint_left_atrium(canvas, anatomy, textures, z)
    _paint_vessels(canvas, anatomy, z)
    return _shading_and_texture(canvas, anatomy, textures), canvas


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _check_volume_args(index: int, size: int, n_slices: int, seed: int, noise_std: float) -> None:
    if not isinstance(size, (int, np.integer)) or size % 2 or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an even integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    if not noise_std >= 0:  # also rejects NaN
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")


def _patient_rngs(index: int, seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for anatomy, texture and noise, determined by (seed, index)."""
    children = np.random.SeedSequence([seed, index]).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def _synthesise(index: int, size: int, n_slices: int, seed: int, noise_std: float) -> tuple[PhantomVolume, _Canvas]:
    """The volume and the canvas holding its tissue fractions."""
    _check_volume_args(index, size, n_slices, seed, noise_std)
    anatomy_rng, texture_rng, noise_rng = _patient_rngs(index, seed)
    grid = _Grid(int(size), int(n_slices))
    anatomy = _sample_anatomy(anatomy_rng, grid.n_slices)
    magnitude, canvas = _render(anatomy, grid, texture_rng)
    magnitude /= max(float(magnitude.max()), 1e-12)
    phase = _background_phase(anatomy, grid)
    image = np.empty(magnitude.shape, dtype=np.complex64)
    image.real = magnitude * np.cos(phase)
    image.imag = magnitude * np.sin(phase)
    if noise_std > 0:
        image += _complex_noise(noise_rng, image.shape, noise_std)
    atrium = canvas.fraction["la_wall"] + canvas.fraction["la_cavity"]
    label = (atrium >= 0.5).astype(np.uint8)
    return PhantomVolume(image=image, label=label, patient_id=phantom_patient_id(index)), canvas


def _complex_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Array:
    """Complex64 Gaussian noise with standard deviation ``std`` in each of the real and imaginary parts."""
    noise = np.empty(shape, dtype=np.complex64)
    noise.real = rng.standard_normal(shape, dtype=np.float32) * std
    noise.imag = rng.standard_normal(shape, dtype=np.float32) * std
    return noise


def generate_patient(
    index: int, size: int = 128, n_slices: int = 20, seed: int = 0, noise_std: float = 0.0
) -> PhantomVolume:
    """Synthesise patient ``index``: complex64 image and uint8 LA label, both (n_slices, size, size).

    Deterministic in (index, size, n_slices, seed, noise_std); different patients differ. The anatomy
    depends on (seed, index, n_slices) only, not on ``size``.
    """
    return _synthesise(index, size, n_slices, seed, noise_std)[0]


def generate_patient_tissues(index: int, size: int = 128, n_slices: int = 20, seed: int = 0) -> dict[str, Array]:
    """Visible fraction in [0, 1] (float32, (S, H, W)) of ``"body"`` and each of ``OCCLUDED_TISSUES``.

    ``"body"`` is everything inside the body outline, ``"la_wall"``/``"la_cavity"`` split the labelled
    LA, ``"myocardium"`` is the left-ventricular myocardium, ``"lung"`` the lung parenchyma. For tests.
    """
    return _synthesise(index, size, n_slices, seed, 0.0)[1].fraction


def split_counts(n_patients: int) -> tuple[int, int, int]:
    """Train/val/test patient counts in the paper's ratios 24/37, 6/37 and the rest (37 -> (24, 6, 7)).

    Counts are rounded half up; val and test get at least one patient each (the train count gives way),
    so ``n_patients >= 3`` is required (``ValueError`` otherwise). E.g. 4 -> (2, 1, 1).
    """
    if n_patients < 3:
        raise ValueError(f"need at least 3 patients for a train/val/test split, got {n_patients}")
    total = sum(PAPER_SPLIT)
    n_val = max(1, math.floor(n_patients * PAPER_SPLIT[1] / total + 0.5))
    n_train = min(math.floor(n_patients * PAPER_SPLIT[0] / total + 0.5), n_patients - n_val - 1)
    return n_train, n_val, n_patients - n_train - n_val


def split_indices(n_patients: int, seed: int) -> dict[str, list[int]]:
    """Patient indices per split: ``default_rng(seed).permutation(n_patients)`` cut by :func:`split_counts`.

    Indices are sorted within each split.
    """
    n_train, n_val, _ = split_counts(n_patients)
    order = np.random.default_rng(seed).permutation(n_patients)
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {name: sorted(int(i) for i in indices) for name, indices in parts.items()}


def _write_patient_file(path: Path, volume: PhantomVolume) -> None:
    """One patient as HDF5: "image" complex64 and "label" uint8 (S, H, W) chunked per slice, "keys" (S,)."""
    import h5py

    n_slices, height, width = volume.image.shape
    keys = [f"{volume.patient_id}/{s:03d}" for s in range(n_slices)]
    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=volume.image.astype(np.complex64), chunks=(1, height, width))
        f.create_dataset("label", data=volume.label.astype(np.uint8), chunks=(1, height, width))
        f.create_dataset("keys", data=keys, dtype=h5py.string_dtype("utf-8"))
        f.attrs["patient_id"] = volume.patient_id


def _prepare_split_dirs(root: Path, splits: dict[str, list[str]]) -> None:
    """Create the split folders; drop an old ``meta.json`` and phantom files not in the new assignment."""
    (root / "meta.json").unlink(missing_ok=True)
    for name, ids in splits.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("phantom_*.h5"):
            if stale.stem not in ids:
                stale.unlink()


def write_phantom_dataset(
    out: str | Path,
    n_patients: int = 37,
    size: int = 128,
    n_slices: int = 20,
    seed: int = 0,
    noise_std: float = 0.0,
    progress: bool = True,
) -> Path:
    """Write ``n_patients`` phantom patients to ``out`` in the ``csmri-slices-v1`` layout; return the root.

    Patient ``i`` is ``generate_patient(i, size, n_slices, seed, noise_std)``. ``meta.json`` is written
    last (an old one is removed first), so an interrupted run leaves no readable dataset. Patient files of
    an earlier phantom in ``out`` are overwritten or, if no longer assigned to that split, removed.
    Raises ``ValueError`` for an odd size, a size outside [32, 1024], ``n_patients < 3`` or ``n_slices < 1``.
    """
    _check_volume_args(0, size, n_slices, seed, noise_std)
    indices = split_indices(n_patients, seed)  # raises for n_patients < 3
    splits = {name: [phantom_patient_id(i) for i in ids] for name, ids in indices.items()}
    root = Path(out)
    _prepare_split_dirs(root, splits)
    jobs: Iterable[tuple[str, int]] = [(name, index) for name, ids in indices.items() for index in ids]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=f"phantom {size}x{size}", unit="patient")
    for name, index in jobs:
        volume = generate_patient(index, size, n_slices, seed, noise_std)
        _write_patient_file(root / name / f"{volume.patient_id}.h5", volume)
    meta = {
        "format": DATASET_FORMAT,
        "source": "phantom",
        "size": [int(size), int(size)],
        "n_slices_per_patient": int(n_slices),
        "seed": int(seed),
        "noise_std": float(noise_std),
        "splits": splits,
        "label_names": {"1": "left_atrium"},
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root


# --------------------------------------------------------------------------------------------------
# Example figure
# --------------------------------------------------------------------------------------------------


def _read_examples_from_root(root: Path, n: int) -> list[tuple[str, Array, Array]]:
    """Up to ``n`` (key, image, label) slices containing the LA, from different patients first."""
    import h5py

    meta = json.loads((root / "meta.json").read_text())
    files = [root / split / f"{pid}.h5" for split, ids in meta["splits"].items() for pid in ids]
    candidates: list[list[tuple[str, Path, int]]] = []
    for path in sorted(files):
        with h5py.File(path, "r") as f:
            present = np.flatnonzero(f["label"][()].reshape(f["label"].shape[0], -1).any(axis=1))
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][()]]
        candidates.append([(keys[s], path, int(s)) for s in _middle_first(present)])
    chosen = _round_robin(candidates, n)
    examples = []
    for key, path, s in chosen:
        with h5py.File(path, "r") as f:
            examples.append((key, f["image"][s], f["label"][s]))
    return examples


def _examples_from_volumes(volumes: Sequence[PhantomVolume], n: int) -> list[tuple[str, Array, Array]]:
    candidates = []
    for volume in volumes:
        present = np.flatnonzero(volume.label.reshape(volume.label.shape[0], -1).any(axis=1))
        candidates.append([(f"{volume.patient_id}/{s:03d}", volume, int(s)) for s in _middle_first(present)])
    return [(key, volume.image[s], volume.label[s]) for key, volume, s in _round_robin(candidates, n)]


def _middle_first(indices: Array) -> list[int]:
    """Indices ordered by distance from their middle element (the most typical LA slice first)."""
    if len(indices) == 0:
        return []
    middle = indices[len(indices) // 2]
    return sorted(indices.tolist(), key=lambda i: (abs(i - middle), i))


def _round_robin(candidates: list[list], n: int) -> list:
    """Take one item per list in turn until ``n`` items are taken or all lists are exhausted."""
    chosen, depth = [], 0
    while len(chosen) < n and any(depth < len(c) for c in candidates):
        chosen += [c[depth] for c in candidates if depth < len(c)][: n - len(chosen)]
        depth += 1
    return chosen


def save_example_grid(root_or_volumes: str | Path | Sequence[PhantomVolume], path: str | Path, n: int = 8) -> Path:
    """Save a PNG grid of ``n`` slices containing the LA (magnitude, gray) with LA label contours in red.

    ``root_or_volumes`` is a dataset root in the ``csmri-slices-v1`` layout or a sequence of
    :class:`PhantomVolume`. Slices come from different patients first (their middle LA slice). Rendered
    with matplotlib's Agg canvas (no pyplot state). Returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(root_or_volumes, (str, Path)):
        examples = _read_examples_from_root(Path(root_or_volumes), n)
    else:
        examples = _examples_from_volumes(list(root_or_volumes), n)
    if not examples:
        raise ValueError("no slice with a left-atrium label to show")
    n_cols = min(4, len(examples))
    n_rows = math.ceil(len(examples) / n_cols)
    figure = Figure(figsize=(2.6 * n_cols, 2.9 * n_rows), dpi=110)
    FigureCanvasAgg(figure)
    for i, (key, image, label) in enumerate(examples):
        axes = figure.add_subplot(n_rows, n_cols, i + 1)
        magnitude = np.abs(image)
        axes.imshow(
            magnitude,
            cmap="gray",
            vmin=0.0,
            vmax=max(float(np.percentile(magnitude, 99.8)), 1e-6),
            interpolation="nearest",
        )
        if label.any():
            axes.contour(label, levels=[0.5], colors="red", linewidths=0.7)
        axes.set_title(key, fontsize=8)
        axes.set_axis_off()
    figure.tight_layout(pad=0.4, h_pad=1.0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
