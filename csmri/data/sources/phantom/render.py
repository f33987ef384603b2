"""Painting a sampled anatomy into a magnitude volume: tissues back to front, textures, shading and phase."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from csmri.data.sources.phantom.anatomy import Anatomy, AtrialInflow, VesselTracks
from csmri.data.sources.phantom.geometry import Array, Grid, StarShape, harmonic_sum, soft_inside

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
    "la_wall_nulled": 0.15,  # an open atrium's healthy wall: dark, as the tissue around it
    "scar": 1.0,
}
# How the LA meets its surroundings. "walled": a closed blood pool inside a bright enhanced wall (the LA label is
# outlined by a ring of its own). "open": the healthy wall nulled (dark, as the tissue it borders; scar still
# enhances), the blood continuing into the pulmonary veins and through the mitral valve into the LV, unlabelled
# (:class:`csmri.data.sources.phantom.anatomy.AtrialInflow`): the label's boundary is partly invisible, as in LGE.
ATRIUM_STYLES = ("walled", "open")
OCCLUDED_TISSUES = ("lung", "myocardium", "la_wall", "la_cavity")  # visible fractions tracked while painting


class Canvas:
    """Magnitude volume painted back to front with soft occupancies; tracks visible tissue fractions."""

    def __init__(self, grid: Grid) -> None:
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


def _unit_noise_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> Array:
    """Gaussian-smoothed white noise rescaled to zero mean and unit std, float32."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field


@dataclass(frozen=True)
class Textures:
    """Unit-variance random fields (S, H, W): tissue heterogeneity (physical scale) and fine grain."""

    coarse: Array
    fine: Array


def _sample_textures(rng: np.random.Generator, grid: Grid) -> Textures:
    """Coarse field: sigma 0.018 (normalised, ~1.2 px at 128^2); fine: 0.6 px at 128^2, sqrt-scaled."""
    shape = (grid.n_slices, grid.size, grid.size)
    coarse_sigma = 0.018 / grid.pixel  # ~1.2 px at 128^2, anatomy-scaled
    fine_sigma = 0.6 * grid.detail_scale
    return Textures(
        coarse=_unit_noise_field(rng, shape, (0.7, coarse_sigma, coarse_sigma)),
        fine=_unit_noise_field(rng, shape, (0.4, fine_sigma, fine_sigma)),
    )


def _paint_filled(
    canvas: Canvas, shape: StarShape, value: float, tissue: str | None = None, clip_to: Array | None = None
) -> None:
    """Paint the interior of ``shape``; ``clip_to`` (full-size occupancy) limits it to another region."""
    window = shape.window(canvas.grid)
    alpha = soft_inside(shape.polar(canvas.grid, window).distance, canvas.grid.pixel)
    if clip_to is not None:
        alpha = alpha * clip_to[(slice(None), *window)]
    canvas.paint(window, alpha, value, tissue)


def _paint_ring(
    canvas: Canvas,
    shape: StarShape,
    thickness: float,
    rim: float,
    core: float,
    rim_tissue: str | None = None,
    core_tissue: str | None = None,
) -> None:
    """Paint ``shape`` with a rim of ``thickness`` (normalised, inside the boundary) around a core."""
    window = shape.window(canvas.grid)
    distance = shape.polar(canvas.grid, window).distance
    canvas.paint(window, soft_inside(distance, canvas.grid.pixel), rim, rim_tissue)
    canvas.paint(window, soft_inside(distance - thickness, canvas.grid.pixel), core, core_tissue)


def _paint_body(canvas: Canvas, anatomy: Anatomy) -> Array:
    """Body outline: subcutaneous fat of varying thickness over the muscle layer; then the thoracic cavity.

    Returns the occupancy (S, H, W) of the region inside the subcutaneous fat.
    """
    grid = canvas.grid
    window = anatomy.body.window(grid)
    polar = anatomy.body.polar(grid, window)
    outline = soft_inside(polar.distance, grid.pixel)
    canvas.paint(window, outline, INTENSITY["fat"])
    canvas.fraction["body"][(slice(None), *window)] = outline
    fat = anatomy.fat_thickness * (1.0 + harmonic_sum(anatomy.fat_harmonics, polar.direction))
    under_fat = np.zeros_like(canvas.intensity)
    under_fat[(slice(None), *window)] = soft_inside(polar.distance - np.maximum(fat, grid.pixel), grid.pixel)
    canvas.paint(window, under_fat[(slice(None), *window)], INTENSITY["muscle"])
    _paint_filled(canvas, anatomy.cavity, INTENSITY["mediastinum"])
    return under_fat


def _paint_lungs(canvas: Canvas, anatomy: Anatomy) -> None:
    """Lungs, clipped to the thoracic cavity."""
    grid = canvas.grid
    window = anatomy.cavity.window(grid)
    cavity = np.zeros_like(canvas.intensity)
    cavity[(slice(None), *window)] = soft_inside(anatomy.cavity.polar(grid, window).distance, grid.pixel)
    for lung in anatomy.lungs:
        _paint_filled(canvas, lung, INTENSITY["lung"], "lung", clip_to=cavity)


def _paint_posterior_mediastinum(canvas: Canvas, anatomy: Anatomy, under_fat: Array) -> None:
    """Paraspinal muscle, vertebra (bright rim, dark core), spinal canal, descending aorta, oesophagus."""
    grid = canvas.grid
    _paint_filled(canvas, anatomy.paraspinal, INTENSITY["muscle"], clip_to=under_fat)
    _paint_ring(canvas, anatomy.vertebra, grid.fine(2.2), INTENSITY["bone_rim"], INTENSITY["marrow"])
    _paint_filled(canvas, anatomy.canal, INTENSITY["csf"])
    _paint_filled(canvas, anatomy.cord, INTENSITY["cord"])
    _paint_ring(canvas, anatomy.aorta, grid.fine(1.0), INTENSITY["vessel_wall"], INTENSITY["blood"])
    _paint_ring(canvas, anatomy.oesophagus, grid.fine(1.5), INTENSITY["oesophagus"], INTENSITY["csf"])


def _paint_heart(canvas: Canvas, anatomy: Anatomy) -> None:
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
        soft_inside(distance + anatomy.lv_myocardium_thickness, grid.pixel),
        INTENSITY["myocardium"],
        "myocardium",
    )
    canvas.paint(window, soft_inside(distance, grid.pixel), INTENSITY["blood"])
    for muscle in anatomy.papillary_muscles:
        _paint_filled(canvas, muscle, INTENSITY["myocardium"], "myocardium")


def _paint_left_atrium(canvas: Canvas, anatomy: Anatomy, textures: Textures, z: Array, wall: float) -> None:
    """LA wall (magnitude ``wall``, thickened and brightened towards scar's at irregular patches) around the blood
    pool."""
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
    wall_variation = np.clip(1.0 + harmonic_sum(la.wall_harmonics, polar.direction), 0.55, 2.0)
    thickness = grid.fine(la.wall_pixels) * wall_variation + grid.fine(la.scar_thickening_pixels) * scar_level
    present = la.present.astype(np.float32)
    wall_value = wall + (INTENSITY["scar"] - wall) * scar_level
    outer = present * soft_inside(polar.distance + thickness, grid.pixel)
    canvas.paint(window, outer, wall_value, "la_wall")
    inner = present * soft_inside(polar.distance, grid.pixel)
    canvas.paint(window, inner, INTENSITY["blood"], "la_cavity")


def _paint_tube(
    canvas: Canvas,
    window: tuple[slice, slice],
    start: tuple[Array, Array],
    direction: tuple[Array, Array],
    half_width: Array | float,
    length: Array | float,
    present: Array,
) -> None:
    """Paint blood in a straight tube from ``start`` (per-slice x, y) along the unit ``direction`` over ``length``,
    ``half_width`` either side of its axis (normalised), on the slices where ``present`` (S, 1, 1) is 1."""
    x, y = canvas.grid.coords(window)
    (x0, y0), (dx, dy) = start, direction
    along = (x - x0) * dx + (y - y0) * dy
    across = np.abs((y - y0) * dx - (x - x0) * dy)
    pixel = canvas.grid.pixel
    alpha = soft_inside(along, pixel) * soft_inside(length - along, pixel) * soft_inside(half_width - across, pixel)
    canvas.paint(window, alpha * present, INTENSITY["blood"])


def _paint_atrial_inflow(canvas: Canvas, anatomy: Anatomy, inflow: AtrialInflow) -> None:
    """The open LA's pulmonary veins and mitral inflow (:class:`AtrialInflow`), painted over the LA: where they
    overlap it, the label gives way to unlabelled blood."""
    grid, la = canvas.grid, anatomy.left_atrium
    cavity = la.cavity
    present = la.present.astype(np.float32)
    window = cavity.window(grid, margin=0.4)
    lobes = cavity.lobes
    ostia = zip(lobes.angle, lobes.height, strict=True) if lobes is not None else ()
    for v, (theta, height) in enumerate(ostia):
        x0, y0 = cavity.boundary_point(float(theta))  # the ostium's tip
        norm = np.sqrt((x0 - cavity.cx) ** 2 + (y0 - cavity.cy) ** 2) + np.float32(1e-6)
        strength = height / max(float(height.max()), 1e-6)  # the ostium's size along z, 1 at its widest
        _paint_tube(
            canvas,
            window,
            (x0, y0),
            ((x0 - cavity.cx) / norm, (y0 - cavity.cy) / norm),
            float(inflow.vein_half_width[v]) * np.sqrt(strength),
            float(inflow.vein_length[v]),
            present * (strength > 0.25),
        )
    lv = anatomy.left_ventricle
    dx, dy = lv.cx - cavity.cx, lv.cy - cavity.cy
    distance = np.sqrt(dx * dx + dy * dy) + np.float32(1e-6)
    inset = np.minimum(cavity.ax, cavity.ay)  # starts inside the cavity: the label ends at a cut, not at a wall
    thickness = anatomy.lv_myocardium_thickness
    cuts_lv = (thickness > 0.5 * float(thickness.max())).astype(np.float32)
    _paint_tube(
        canvas,
        window,
        (cavity.cx + dx / distance * inset, cavity.cy + dy / distance * inset),
        (dx / distance, dy / distance),
        inflow.mitral_half_width,
        distance - inset,
        present * cuts_lv,
    )


def _vessel_position(
    tracks: VesselTracks, lungs: tuple[StarShape, StarShape], v: int, s: int, z: float
) -> tuple[float, float]:
    """Centre of vessel ``v`` on slice ``s`` (normalised), from its polar position in the lung frame."""
    lung = lungs[int(tracks.lung[v])]
    theta = tracks.angle[v] + tracks.angle_slope[v] * z
    radial = np.clip(tracks.radial[v] + tracks.radial_slope[v] * (z - 0.5), 0.05, 0.9)
    u = radial * math.cos(theta) * float(lung.ax[s, 0, 0])
    w = radial * math.sin(theta) * float(lung.ay[s, 0, 0])
    cos_a, sin_a = math.cos(lung.angle), math.sin(lung.angle)
    return float(lung.cx[s, 0, 0]) + cos_a * u - sin_a * w, float(lung.cy[s, 0, 0]) + sin_a * u + cos_a * w


def _paint_vessels(canvas: Canvas, anatomy: Anatomy, z: Array) -> None:
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


def _shading_and_texture(canvas: Canvas, anatomy: Anatomy, textures: Textures) -> Array:
    """Magnitude times smooth receive-coil shading and multiplicative tissue texture (float32, >= 0)."""
    x, y = canvas.grid.coords((slice(None), slice(None)))
    sx, sy, sr = anatomy.shading
    shading = np.exp(sx * x + sy * y + sr * (x * x + y * y)).astype(np.float32)
    texture = 1.0 + 0.10 * textures.coarse + 0.07 * textures.fine
    return np.maximum(canvas.intensity * shading * texture, 0.0)


def background_phase(anatomy: Anatomy, grid: Grid) -> Array:
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


def render_magnitude(
    anatomy: Anatomy, grid: Grid, texture_rng: np.random.Generator, inflow: AtrialInflow | None = None
) -> tuple[Array, Canvas]:
    """Magnitude volume (float32, un-normalised) and the canvas with the tracked tissue fractions; a walled LA
    (:data:`ATRIUM_STYLES`) without ``inflow``, an open one with it."""
    z = grid.z()
    canvas = Canvas(grid)
    textures = _sample_textures(texture_rng, grid)
    under_fat = _paint_body(canvas, anatomy)
    _paint_lungs(canvas, anatomy)
    _paint_posterior_mediastinum(canvas, anatomy, under_fat)
    _paint_heart(canvas, anatomy)
    if inflow is None:
        _paint_left_atrium(canvas, anatomy, textures, z, INTENSITY["la_wall"])
    else:
        _paint_left_atrium(canvas, anatomy, textures, z, INTENSITY["la_wall_nulled"])
        _paint_atrial_inflow(canvas, anatomy, inflow)
    _paint_vessels(canvas, anatomy, z)
    return _shading_and_texture(canvas, anatomy, textures), canvas
