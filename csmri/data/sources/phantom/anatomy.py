"""Random phantom anatomy: one patient's shapes and parameters, drawn from its rng independently of the image size."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from csmri.data.sources.phantom.geometry import (
    REFERENCE_SIZE,
    Array,
    Grid,
    Lobes,
    StarShape,
    angular_bump,
)


class ParameterSampler:
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
    ) -> StarShape:
        """Star shape near ``centre`` with semi-axes ``axes`` scaled per slice by ``profile``."""
        cx = self.along_z(self.scalar(centre[0], position_jitter), position_jitter)
        cy = self.along_z(self.scalar(centre[1], position_jitter), position_jitter)
        growth = self.along_z(1.0, size_jitter * 0.5) * np.float32(1.0 + size_jitter * self.rng.normal())
        scale = np.maximum(growth * np.asarray(profile, dtype=np.float32), 1e-3)
        return StarShape(
            cx=cx,
            cy=cy,
            ax=(axes[0] * scale).astype(np.float32),
            ay=(axes[1] * scale).astype(np.float32),
            angle=self.scalar(angle, 0.08),
            harmonics=self.harmonics(roughness),
        )


def smoothstep(edge0: float, edge1: float, z: Array) -> Array:
    """Cubic ramp from 0 (z <= edge0) to 1 (z >= edge1); edges may be reversed for a falling ramp."""
    t = np.clip((z - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


@dataclass(frozen=True)
class ScarPatches:
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
            bump = angular_bump(direction, self.angle[p], self.concentration[p])
            total += along_z.astype(np.float32) * bump
        return total


@dataclass(frozen=True)
class LeftAtrium:
    """LA cavity shape, its wall (thickness in pixels at 128^2 plus harmonics) and scar patches."""

    cavity: StarShape
    present: Array  # (S, 1, 1) bool
    wall_pixels: float
    wall_harmonics: Array
    scar_thickening_pixels: float
    scars: ScarPatches


@dataclass(frozen=True)
class VesselTracks:
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
class Anatomy:
    """All random parameters of one patient (independent of the image size)."""

    body: StarShape
    fat_thickness: float
    fat_harmonics: Array
    cavity: StarShape
    lungs: tuple[StarShape, StarShape]
    paraspinal: StarShape
    vertebra: StarShape
    canal: StarShape
    cord: StarShape
    aorta: StarShape
    oesophagus: StarShape
    heart: StarShape
    epicardial_fat_thickness: float
    ascending_aorta: StarShape
    pulmonary_trunk: StarShape
    right_atrium: StarShape
    right_ventricle: StarShape
    left_ventricle: StarShape
    lv_myocardium_thickness: Array  # (S, 1, 1), shrinks with the ventricle
    papillary_muscles: tuple[StarShape, ...]
    coronary_arteries: tuple[StarShape, ...]
    left_atrium: LeftAtrium
    vessels: VesselTracks
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


def _sample_vein_ostia(rng: np.random.Generator, z: Array, z_first: float, z_last: float) -> Lobes:
    """Two to four pulmonary-vein ostia: lateral-posterior LA protrusions that come and go along z."""
    count = int(rng.integers(2, 5))
    # alternate the patient's left (image right, theta ~ 0) and right veins, tilted posteriorly (+y)
    lateral_posterior = np.resize([0.45, math.pi - 0.45], count)
    peaks = rng.uniform(z_first, z_last, count)
    widths = rng.uniform(0.04, 0.1, count)
    heights = rng.uniform(0.15, 0.4, count)
    profiles = np.exp(-0.5 * ((z[None] - peaks[:, None, None, None]) / widths[:, None, None, None]) ** 2)
    return Lobes(
        angle=lateral_posterior + rng.normal(0.0, 0.3, count),
        concentration=rng.uniform(6.0, 14.0, count),
        height=(heights[:, None, None, None] * profiles).astype(np.float32),
    )


def circle(cx: Array, cy: Array, radius: Array | float) -> StarShape:
    """A circle with per-slice centre (S, 1, 1) and radius."""
    radius = np.maximum(np.broadcast_to(np.asarray(radius, dtype=np.float32), cx.shape), 1e-4)
    return StarShape(
        cx=cx.astype(np.float32),
        cy=cy.astype(np.float32),
        ax=radius,
        ay=radius.copy(),
        angle=0.0,
        harmonics=np.zeros((1, *cx.shape), dtype=np.complex64),
    )


def _sample_papillary_muscles(s: ParameterSampler, ventricle: StarShape, profile: Array) -> tuple[StarShape, ...]:
    """Two small dark papillary muscles inside the LV blood pool, following the ventricle."""
    muscles = []
    for theta in (s.scalar(0.6, 0.3), s.scalar(2.6, 0.3)):
        cx, cy = ventricle.boundary_point(theta)
        mix = s.scalar(0.45, 0.08)  # fraction of the way from the boundary to the centre
        radius = np.float32(s.scalar(0.017, 0.003)) * profile
        muscles.append(circle(cx + mix * (ventricle.cx - cx), cy + mix * (ventricle.cy - cy), radius))
    return tuple(muscles)


def _sample_coronary_arteries(s: ParameterSampler, heart: StarShape, fat_thickness: float) -> tuple[StarShape, ...]:
    """Three to five small vessels running in the epicardial fat band."""
    count = int(s.rng.integers(3, 6))
    angles = s.rng.uniform(0.0, 2.0 * math.pi, count)
    return tuple(
        circle(
            *heart.boundary_point(float(theta), inset=0.5 * fat_thickness),
            s.scalar(0.013, 0.002) * np.ones_like(heart.cx),
        )
        for theta in angles
    )


def _sample_left_atrium(sampler: ParameterSampler, n_slices: int) -> LeftAtrium:
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
    scars = ScarPatches(
        angle=rng.uniform(0.0, 2.0 * math.pi, n_scars),
        concentration=rng.uniform(8.0, 60.0, n_scars),
        z_centre=rng.uniform(z_first, z_last, n_scars),
        z_width=rng.uniform(0.03, 0.1, n_scars),
        strength=rng.uniform(0.5, 1.5, n_scars),
    )
    return LeftAtrium(
        cavity=cavity,
        present=(index >= first) & (index <= last),
        wall_pixels=sampler.scalar(1.4, 0.15),
        wall_harmonics=sampler.harmonics(0.45, n_terms=7, drift=0.6, first=1),
        scar_thickening_pixels=float(rng.uniform(0.6, 1.2)),
        scars=scars,
    )


@dataclass(frozen=True)
class AtrialInflow:
    """The blood that continues out of an *open* LA (:data:`ATRIUM_STYLES`), all of it unlabelled.

    One pulmonary vein per vein ostium (the LA cavity's lobes, same order): a straight tube of blood from the
    ostium's tip outwards, ``vein_half_width`` and ``vein_length`` (L,) normalised; and the mitral inflow, a tube of
    half-width ``mitral_half_width`` (normalised) from inside the cavity to the LV's centre on the slices that cut
    the LV. The label ends where an annotator ends it (the ostium, the cavity's outline), with nothing in the image
    to mark the cut: the boundary ambiguity of LA segmentation in LGE.
    """

    vein_half_width: Array
    vein_length: Array
    mitral_half_width: float


def sample_atrial_inflow(rng: np.random.Generator, left_atrium: LeftAtrium) -> AtrialInflow:
    """Vein calibre (half-width 0.026-0.038, ~1.7-2.4 px at 128^2), length 0.08-0.2 and the mitral inflow's
    half-width 0.04-0.06, from the patient's own stream (so the rest of its anatomy does not depend on the style)."""
    count = len(left_atrium.cavity.lobes.angle) if left_atrium.cavity.lobes is not None else 0
    return AtrialInflow(
        vein_half_width=rng.uniform(0.026, 0.038, count),
        vein_length=rng.uniform(0.08, 0.2, count),
        mitral_half_width=float(rng.uniform(0.04, 0.06)),
    )


def _sample_vessels(rng: np.random.Generator, count: int = 70) -> VesselTracks:
    """``count`` vessel tracks, each visible over a random z-interval; ~1/3 run in-plane (short tubes)."""
    half_length = rng.uniform(0.08, 0.4, count)
    centre = rng.uniform(-0.1, 1.1, count)
    elongated = rng.random(count) < 0.35
    return VesselTracks(
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


def sample_anatomy(rng: np.random.Generator, n_slices: int) -> Anatomy:
    """Draw one patient's anatomy; every draw is independent of the image size."""
    z = Grid(REFERENCE_SIZE, n_slices).z()
    s = ParameterSampler(rng, z)
    body = s.star((0.0, 0.05), (0.88, 0.64), 0.0, position_jitter=0.01, size_jitter=0.04, roughness=0.035)
    cavity = s.star((0.0, 0.0), (0.76, 0.5), 0.0, position_jitter=0.01, size_jitter=0.04, roughness=0.03)
    lungs = (
        s.star((-0.42, 0.0), (0.36, 0.5), -0.15, size_jitter=0.06, roughness=0.06),
        s.star((0.46, 0.02), (0.32, 0.48), 0.15, size_jitter=0.06, roughness=0.06),
    )
    great_vessels = smoothstep(0.5, 0.2, z)
    ventricles = smoothstep(0.25, 0.65, z)
    heart = s.star(
        (0.08, -0.1),
        (0.4, 0.3),
        -0.5,
        position_jitter=0.02,
        size_jitter=0.06,
        roughness=0.04,
        profile=0.8 + 0.2 * smoothstep(0.0, 0.5, z),
    )
    epicardial_fat_thickness = s.scalar(0.025, 0.005)
    left_ventricle = s.star((0.24, -0.11), (0.12, 0.1), -0.5, roughness=0.05, profile=ventricles)
    return Anatomy(
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
        pulmonary_trunk=s.star((0.12, -0.24), (0.08, 0.07), 0.3, roughness=0.03, profile=smoothstep(0.4, 0.1, z)),
        right_atrium=s.star((-0.22, -0.02), (0.11, 0.11), 0.0, roughness=0.06, profile=smoothstep(0.15, 0.4, z)),
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
