"""Variable-density Cartesian undersampling masks (Schlemper et al.'s ``cartesian_mask``).

A mask samples whole phase-encode lines (rows, dim -2); each sampled line is full along the readout
axis (columns, dim -1). For ``N`` phase-encode lines and acceleration ``acc``:

- density over the line index ``i``: ``exp(-(i - N/2)^2 / (2 sigma^2)) + 1 / (2 acc)`` with
  ``sigma = N / 10`` (a Gaussian peaked at the k-space centre plus a uniform floor);
- the ``sample_n`` centre lines ``N//2 - sample_n//2 ... N//2 - sample_n//2 + sample_n - 1`` are always
  sampled;
- the remaining ``floor(N / acc) - sample_n`` lines are drawn *without replacement* from the density
  restricted to the other lines and normalised, so exactly ``floor(N / acc)`` lines are sampled.

The paper uses ``sample_n = 8`` at ``N = 512`` (``N / 64``). A fixed 8 would leave no random lines at
small test sizes, so the default :func:`default_sample_n` scales with ``N``: ``max(2, N // 64)``.
Set ``sample_n=8`` explicitly to reproduce the paper at 512^2.

k-space is centred (see :mod:`csmri.physics.fft`), so the mask needs no shifting.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

MIN_LINES = 4


def default_sample_n(n_lines: int) -> int:
    """Number of always-sampled centre lines for ``n_lines`` phase-encode lines: ``max(2, N // 64)``."""
    return max(2, n_lines // 64)


def validate_mask_parameters(n: int, acceleration: float, sample_n: int) -> int:
    """Check the mask parameters and return the total number of sampled lines ``floor(N / acc)``."""
    if n < MIN_LINES or n % 2:
        raise ValueError(f"mask size along the phase-encode axis must be even and >= {MIN_LINES}, got {n}")
    if not acceleration >= 1:  # also rejects NaN
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 <= sample_n <= n:
        raise ValueError(f"sample_n must be in [0, {n}], got {sample_n}")
    n_sampled = int(n / acceleration)
    if n_sampled < sample_n:
        raise ValueError(
            f"acceleration {acceleration} leaves {n_sampled} of {n} lines, fewer than the "
            f"sample_n={sample_n} centre lines; lower the acceleration or sample_n"
        )
    return n_sampled


def centre_slice(n: int, sample_n: int) -> slice:
    """Index range of the ``sample_n`` always-sampled centre lines of ``n`` lines."""
    start = n // 2 - sample_n // 2
    return slice(start, start + sample_n)


def gaussian_line_density(
    n: int, acceleration: float, sample_n: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Sampling density ``(n,)`` (float32, sums to 1) of the randomly drawn lines; centre lines are 0."""
    sample_n = default_sample_n(n) if sample_n is None else sample_n
    validate_mask_parameters(n, acceleration, sample_n)
    index = torch.arange(n, dtype=torch.float64, device=device)
    sigma = n / 10.0
    density = torch.exp(-0.5 * ((index - n / 2.0) / sigma) ** 2) + 1.0 / (2.0 * acceleration)
    density[centre_slice(n, sample_n)] = 0.0
    return (density / density.sum()).float()


def gaussian_line_lines(
    batch_size: int,
    n: int,
    acceleration: float,
    sample_n: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sampled-line indicator ``(batch_size, n)`` (bool), one independent draw per row.

    Drawn with ``torch.multinomial`` on ``device`` (default: the generator's device, else CPU), so a
    whole batch is one call. The same generator state gives the same lines on the same device type.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sample_n = default_sample_n(n) if sample_n is None else sample_n
    n_sampled = validate_mask_parameters(n, acceleration, sample_n)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    lines = torch.zeros(batch_size, n, dtype=torch.bool, device=device)
    lines[:, centre_slice(n, sample_n)] = True
    n_random = n_sampled - sample_n
    if n_random > 0:
        density = gaussian_line_density(n, acceleration, sample_n, device=device)
        drawn = torch.multinomial(density.expand(batch_size, n), n_random, replacement=False, generator=generator)
        lines.scatter_(1, drawn, True)
    return lines


def lines_to_mask(lines: torch.Tensor, width: int) -> torch.Tensor:
    """Line indicator ``(B, H)`` -> float32 mask ``(B, H, W)`` with every sampled row full along W."""
    return lines.to(torch.float32).unsqueeze(-1).expand(*lines.shape, width).contiguous()


def gaussian_line_mask(
    batch_size: int,
    shape: tuple[int, int],
    acceleration: float,
    sample_n: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Batch of variable-density Cartesian masks, float32 0/1 of shape ``(batch_size, H, W)``.

    ``shape = (H, W)``: H is the phase-encode axis (lines drawn), W the readout axis (always full).
    ``sample_n=None`` uses :func:`default_sample_n`. Raises ``ValueError`` for odd or tiny ``H``,
    ``acceleration < 1`` or an acceleration that leaves fewer than ``sample_n`` lines.
    """
    height, width = shape
    if width < 1:
        raise ValueError(f"mask width must be >= 1, got {width}")
    lines = gaussian_line_lines(batch_size, height, acceleration, sample_n, generator, device)
    return lines_to_mask(lines, width)


# -- fastMRI-style masks: a fraction of centre lines plus uniform random or equispaced lines -----------------------

MASK_TYPES = ("gaussian", "random", "equispaced")


def centre_line_count(n: int, sample_n: int | None = None, center_fraction: float | None = None) -> int:
    """Always-sampled centre lines: ``sample_n`` if set, else ``round(N * center_fraction)`` if set, else
    :func:`default_sample_n`. Setting both is an error."""
    if sample_n is not None and center_fraction is not None:
        raise ValueError(f"set sample_n ({sample_n}) or center_fraction ({center_fraction}), not both")
    if center_fraction is not None:
        if not 0 <= center_fraction <= 1:
            raise ValueError(f"center_fraction must be in [0, 1], got {center_fraction}")
        return int(round(n * center_fraction))
    return default_sample_n(n) if sample_n is None else sample_n


def random_line_lines(
    batch_size: int,
    n: int,
    acceleration: float,
    sample_n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """fastMRI ``RandomMaskFunc`` lines ``(batch_size, n)`` (bool): the ``sample_n`` centre lines plus lines drawn
    uniformly at random outside the centre.

    fastMRI keeps each outer line with probability ``(N/acc - centre) / (N - centre)``, so its line count varies;
    csmri draws exactly that expected number ``floor(N/acc) - sample_n`` without replacement, so the acceleration
    is exact, as for the Gaussian mask.
    """
    n_sampled = validate_mask_parameters(n, acceleration, sample_n)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    lines = torch.zeros(batch_size, n, dtype=torch.bool, device=device)
    centre = centre_slice(n, sample_n)
    lines[:, centre] = True
    n_random = n_sampled - sample_n
    if n_random > 0:
        density = torch.ones(n, dtype=torch.float32, device=device)
        density[centre] = 0.0
        drawn = torch.multinomial(density.expand(batch_size, n), n_random, replacement=False, generator=generator)
        lines.scatter_(1, drawn, True)
    return lines


def equispaced_spacing(n: int, acceleration: float, sample_n: int) -> int:
    """Line spacing of the equispaced mask, fastMRI's ``EquispacedMaskFractionFunc``: the acceleration adjusted so
    that centre + equispaced lines total about ``N / acc``: ``round(acc (L - N) / (L acc - N))`` for ``L`` centre
    lines (``round(acc)`` when ``L = 0``), at least 1."""
    validate_mask_parameters(n, acceleration, sample_n)
    if sample_n == 0:
        return max(1, round(acceleration))
    denominator = sample_n * acceleration - n
    if denominator >= 0:  # the centre alone reaches the acceleration
        return n
    return max(1, round(acceleration * (sample_n - n) / denominator))


def equispaced_line_lines(
    batch_size: int,
    n: int,
    acceleration: float,
    sample_n: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """fastMRI ``EquispacedMaskFractionFunc`` lines ``(batch_size, n)`` (bool): the ``sample_n`` centre lines plus
    every ``s``-th line (:func:`equispaced_spacing`) from a random offset in ``[0, s)``, one offset per row."""
    spacing = equispaced_spacing(n, acceleration, sample_n)
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, spacing, (batch_size, 1), generator=generator, device=device)
    index = torch.arange(n, device=device)
    lines = (index.unsqueeze(0) - offsets) % spacing == 0
    lines[:, centre_slice(n, sample_n)] = True
    return lines


# -- mask families as classes (fastMRI's MaskFunc shape), named by ``_target_`` in the data configs -------------


class LineMaskFunc:
    """A family of phase-encode line masks, shaped like fastMRI's ``MaskFunc``: built with the acquisition's settings,
    called with the batch size, the image shape ``(H, W)`` and a generator; returns float32 0/1 masks
    ``(batch_size, H, W)``, every sampled row full along W.

    Args:
        acceleration: ``floor(H / acceleration)`` lines are sampled.
        sample_n, center_fraction: always-sampled centre lines (at most one of them; see :func:`centre_line_count`).

    Subclasses set ``name`` (the family's name in configs and checkpoints, e.g. ``data.mask=random``) and implement
    :meth:`lines`. A data config names a family by class: ``mask: {_target_: csmri.physics.mask.RandomLineMask,
    _partial_: true}`` (the data module supplies the settings).
    """

    name = ""

    def __init__(self, acceleration: float, sample_n: int | None = None, center_fraction: float | None = None) -> None:
        if sample_n is not None and center_fraction is not None:
            raise ValueError(f"set sample_n ({sample_n}) or center_fraction ({center_fraction}), not both")
        self.acceleration, self.sample_n, self.center_fraction = acceleration, sample_n, center_fraction

    def centre_lines(self, n: int) -> int:
        """The always-sampled centre lines for ``n`` phase-encode lines."""
        return centre_line_count(n, self.sample_n, self.center_fraction)

    def check_shape(self, shape: tuple[int, int]) -> None:
        """Raise ``ValueError`` if masks cannot be drawn for images of ``shape = (H, W)``."""
        validate_mask_parameters(shape[0], self.acceleration, self.centre_lines(shape[0]))

    def lines(
        self, batch_size: int, n: int, generator: torch.Generator | None, device: torch.device | str | None
    ) -> torch.Tensor:
        """Sampled-line indicators ``(batch_size, n)`` (bool)."""
        raise NotImplementedError

    def __call__(
        self,
        batch_size: int,
        shape: tuple[int, int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        height, width = shape
        if width < 1:
            raise ValueError(f"mask width must be >= 1, got {width}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return lines_to_mask(self.lines(batch_size, height, generator, device), width)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(acceleration={self.acceleration}, sample_n={self.sample_n}, "
            f"center_fraction={self.center_fraction})"
        )


class GaussianLineMask(LineMaskFunc):
    """The paper's variable-density mask (:func:`gaussian_line_lines`; bit-identical to :func:`gaussian_line_mask`)."""

    name = "gaussian"

    def lines(self, batch_size, n, generator, device) -> torch.Tensor:  # type: ignore[override]
        unset = self.sample_n is None and self.center_fraction is None
        return gaussian_line_lines(
            batch_size, n, self.acceleration, None if unset else self.centre_lines(n), generator, device
        )


class RandomLineMask(LineMaskFunc):
    """fastMRI's ``RandomMaskFunc`` with an exact acceleration (:func:`random_line_lines`)."""

    name = "random"

    def lines(self, batch_size, n, generator, device) -> torch.Tensor:  # type: ignore[override]
        return random_line_lines(batch_size, n, self.acceleration, self.centre_lines(n), generator, device)


class EquispacedLineMask(LineMaskFunc):
    """fastMRI's ``EquispacedMaskFractionFunc`` (:func:`equispaced_line_lines`)."""

    name = "equispaced"

    def lines(self, batch_size, n, generator, device) -> torch.Tensor:  # type: ignore[override]
        return equispaced_line_lines(batch_size, n, self.acceleration, self.centre_lines(n), generator, device)


MASK_FAMILIES: dict[str, type[LineMaskFunc]] = {
    c.name: c for c in (GaussianLineMask, RandomLineMask, EquispacedLineMask)
}


def mask_func(
    mask: Any, acceleration: float, sample_n: int | None = None, center_fraction: float | None = None
) -> LineMaskFunc:
    """The :class:`LineMaskFunc` that ``mask`` names, built with these settings.

    ``mask``: a family name in :data:`MASK_TYPES`; the dotted path of a :class:`LineMaskFunc` subclass (what a
    config's ``_target_`` names, e.g. ``csmri.physics.mask.RandomLineMask``); such a class, or a factory of one
    (Hydra's ``_partial_``); or an instance (returned as is).
    """
    if isinstance(mask, LineMaskFunc):
        return mask
    factory = mask
    if isinstance(mask, str):
        factory = MASK_FAMILIES.get(mask) or (_import(mask) if "." in mask else None)
        if factory is None:
            raise ValueError(f"unknown mask type {mask!r}; choose one of {', '.join(MASK_TYPES)}")
        if not (isinstance(factory, type) and issubclass(factory, LineMaskFunc)):
            raise ValueError(f"{mask!r} does not name a csmri.physics.mask.LineMaskFunc class")
    if not callable(factory):
        raise ValueError(f"a mask must be a family name or a LineMaskFunc class, got {mask!r}")
    built = factory(acceleration=acceleration, sample_n=sample_n, center_fraction=center_fraction)
    if not isinstance(built, LineMaskFunc):
        raise ValueError(f"{mask!r} does not build a csmri.physics.mask.LineMaskFunc")
    return built


def mask_name(func: LineMaskFunc) -> str:
    """How checkpoints record a mask family: its name, or the dotted path of a class from outside csmri."""
    cls = type(func)
    return func.name if MASK_FAMILIES.get(func.name) is cls else f"{cls.__module__}.{cls.__qualname__}"


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"unknown mask type {path!r}: cannot import it ({err})") from err


def line_mask(
    kind: str,
    batch_size: int,
    shape: tuple[int, int],
    acceleration: float,
    sample_n: int | None = None,
    center_fraction: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Masks ``(batch_size, H, W)`` (float32 0/1) of family ``kind`` (see :func:`mask_func`).

    ``gaussian`` is :func:`gaussian_line_mask` (bit-identical to calling it; ``center_fraction``, if set, gives
    its ``sample_n``); ``random`` and ``equispaced`` follow fastMRI (see :func:`random_line_lines`,
    :func:`equispaced_line_lines`). Centre lines: :func:`centre_line_count`.
    """
    return mask_func(kind, acceleration, sample_n, center_fraction)(batch_size, shape, generator, device)
