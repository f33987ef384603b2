"""One synthetic patient: :func:`generate_patient` samples an anatomy, renders it and adds phase and noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from csmri.data.sources.phantom.anatomy import sample_anatomy, sample_atrial_inflow
from csmri.data.sources.phantom.geometry import Array, Grid
from csmri.data.sources.phantom.render import ATRIUM_STYLES, Canvas, background_phase, render_magnitude
from csmri.data.sources.phantom.tracing import trace_outline

MIN_SIZE, MAX_SIZE = 32, 1024


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


Resolution = float | tuple[float, float] | list[float]


def check_volume_args(
    index: int,
    size: int,
    n_slices: int,
    seed: int,
    noise_std: float,
    resolution: Resolution = 1.0,
    atrium: str = "walled",
    tracing: float = 0.0,
) -> None:
    if atrium not in ATRIUM_STYLES:
        raise ValueError(f"atrium must be one of {', '.join(ATRIUM_STYLES)}, got {atrium!r}")
    if not tracing >= 0:  # also rejects NaN
        raise ValueError(f"tracing (the annotator's rms offset, pixels at 128^2) must be >= 0, got {tracing}")
    if not isinstance(size, (int, np.integer)) or size % 2 or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an even integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    if not noise_std >= 0:  # also rejects NaN
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    bounds = _resolution_bounds(resolution)
    if not (0.1 <= bounds[0] <= bounds[1] <= 1.0):  # also rejects NaN
        raise ValueError(
            "resolution (acquired fraction of the k-space extent) must be in [0.1, 1], or a range [low, high] "
            f"within it, got {resolution}"
        )


def _resolution_bounds(resolution: Resolution) -> tuple[float, float]:
    if isinstance(resolution, int | float):
        return float(resolution), float(resolution)
    values = [float(v) for v in resolution]
    if len(values) != 2:
        raise ValueError(f"resolution must be a number or a range [low, high], got {resolution}")
    return values[0], values[1]


def plain_resolution(resolution: Resolution) -> float | list[float]:
    """``resolution`` as recorded and compared in settings: a float, or ``[low, high]`` of floats (from any sequence,
    e.g. a Hydra ListConfig)."""
    if isinstance(resolution, int | float):
        return float(resolution)
    return list(_resolution_bounds(resolution))


def patient_resolution(resolution: Resolution, rng: np.random.Generator) -> float:
    """The acquired resolution of one patient: ``resolution`` itself, or uniform in a ``[low, high]`` range
    (scans of a real data set differ in resolution; drawn from the patient's own acquisition stream)."""
    low, high = _resolution_bounds(resolution)
    return low if low == high else float(rng.uniform(low, high))


def acquisition_window(size: int, resolution: float) -> Array:
    """Separable k-space window ``(size, size)`` float32 of a scan acquired at ``resolution`` of the grid's.

    1 over the central ``resolution`` of each k-space axis, apart from a raised-cosine roll-off over its outer
    fifth (against Gibbs ringing), 0 beyond: the zero-filled interpolation with which scanners reconstruct
    e.g. LGE volumes acquired at 1.25 mm onto a 0.625 mm grid (the paper's data). ``resolution = 1`` is all ones.
    Centred convention (zero frequency at index ``size // 2``), as :mod:`csmri.physics.fft`.
    """
    if resolution >= 1.0:
        return np.ones((size, size), dtype=np.float32)
    k = np.abs(np.arange(size) - size // 2) / (size / 2)  # |k| / k_max in [0, 1]
    edge, flat = resolution, 0.8 * resolution
    ramp = np.clip((edge - k) / (edge - flat), 0.0, 1.0)
    line = (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
    return line[:, None] * line[None, :]


def band_limit(image: Array, resolution: float) -> Array:
    """``image`` complex (S, H, W) as a scan at ``resolution`` of the grid's would show it (see
    :func:`acquisition_window`), complex64."""
    if resolution >= 1.0:
        return image
    window = acquisition_window(image.shape[-1], resolution)
    axes = (-2, -1)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=axes), axes=axes, norm="ortho"), axes=axes)
    limited = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace * window, axes=axes), axes=axes, norm="ortho"), axes=axes
    )
    return limited.astype(np.complex64)


def _patient_rngs(index: int, seed: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for anatomy, texture, noise, acquisition, the open atrium's inflow and the annotator's
    tracing, determined by (seed, index) (child ``i`` of a SeedSequence does not depend on how many are spawned, so
    adding a stream changes none of the others)."""
    children = np.random.SeedSequence([seed, index]).spawn(6)
    return tuple(np.random.default_rng(child) for child in children)


def _synthesise(
    index: int,
    size: int,
    n_slices: int,
    seed: int,
    noise_std: float,
    resolution: Resolution = 1.0,
    atrium: str = "walled",
    tracing: float = 0.0,
) -> tuple[PhantomVolume, Canvas]:
    """The volume and the canvas holding its tissue fractions (those of the true outline, not the traced one)."""
    check_volume_args(index, size, n_slices, seed, noise_std, resolution, atrium, tracing)
    anatomy_rng, texture_rng, noise_rng, acquisition_rng, inflow_rng, tracing_rng = _patient_rngs(index, seed)
    resolution = patient_resolution(resolution, acquisition_rng)
    grid = Grid(int(size), int(n_slices))
    anatomy = sample_anatomy(anatomy_rng, grid.n_slices)
    inflow = sample_atrial_inflow(inflow_rng, anatomy.left_atrium) if atrium == "open" else None
    magnitude, canvas = render_magnitude(anatomy, grid, texture_rng, inflow)
    magnitude /= max(float(magnitude.max()), 1e-12)
    phase = background_phase(anatomy, grid)
    image = np.empty(magnitude.shape, dtype=np.complex64)
    image.real = magnitude * np.cos(phase)
    image.imag = magnitude * np.sin(phase)
    if resolution < 1.0:
        image = band_limit(image, resolution)
        image /= max(float(np.abs(image).max()), 1e-12)
    if noise_std > 0:  # acquired noise: band-limited like the signal
        image += band_limit(_complex_noise(noise_rng, image.shape, noise_std), resolution)
    atrium = canvas.fraction["la_wall"] + canvas.fraction["la_cavity"]
    label = trace_outline((atrium >= 0.5).astype(np.uint8), tracing_rng, tracing * grid.detail_scale)
    return PhantomVolume(image=image, label=label, patient_id=phantom_patient_id(index)), canvas


def _complex_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Array:
    """Complex64 Gaussian noise with standard deviation ``std`` in each of the real and imaginary parts."""
    noise = np.empty(shape, dtype=np.complex64)
    noise.real = rng.standard_normal(shape, dtype=np.float32) * std
    noise.imag = rng.standard_normal(shape, dtype=np.float32) * std
    return noise


def generate_patient(
    index: int,
    size: int = 128,
    n_slices: int = 20,
    seed: int = 0,
    noise_std: float = 0.0,
    resolution: Resolution = 1.0,
    atrium: str = "walled",
    tracing: float = 0.0,
) -> PhantomVolume:
    """Synthesise patient ``index``: complex64 image and uint8 LA label, both (n_slices, size, size).

    ``resolution`` < 1 band-limits the image (and its noise) to the central fraction of k-space, as a scan
    acquired at that fraction of the grid's resolution and zero-filled to it (:func:`acquisition_window`);
    the label keeps the grid's resolution; a range ``[low, high]`` draws each patient's resolution uniformly
    from it (:func:`patient_resolution`). ``atrium`` is how the LA meets its surroundings
    (:data:`~csmri.data.sources.phantom.render.ATRIUM_STYLES`: ``"walled"``, a closed pool in a bright wall;
    ``"open"``, its healthy wall nulled and its blood continuing, unlabelled, into the veins and the LV). ``tracing``
    > 0 labels the LA as an annotator traces it, each slice's outline off the true one by a smooth offset of that rms
    (pixels at 128^2, growing as sqrt(size / 128) like the other fine detail; :func:`.tracing.trace_outline`); the
    image is the same. Deterministic in (index, size, n_slices, seed, noise_std, resolution, atrium, tracing);
    different patients differ. The anatomy depends on (seed, index, n_slices) only, not on ``size``; both styles
    share it.
    """
    return _synthesise(index, size, n_slices, seed, noise_std, resolution, atrium, tracing)[0]


def generate_patient_tissues(
    index: int, size: int = 128, n_slices: int = 20, seed: int = 0, atrium: str = "walled"
) -> dict[str, Array]:
    """Visible fraction in [0, 1] (float32, (S, H, W)) of ``"body"`` and each of ``OCCLUDED_TISSUES``.

    ``"body"`` is everything inside the body outline, ``"la_wall"``/``"la_cavity"`` split the labelled
    LA, ``"myocardium"`` is the left-ventricular myocardium, ``"lung"`` the lung parenchyma. For tests.
    """
    return _synthesise(index, size, n_slices, seed, 0.0, atrium=atrium)[1].fraction
