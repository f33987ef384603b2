"""Per-slice image-quality metrics for MR reconstructions (pure torch, CPU or CUDA).

Conventions (DESIGN.md §2 "Metrics conventions"):

* Inputs are real **magnitude** images of shape ``(B, H, W)`` or ``(B, 1, H, W)``; every slice of
  the batch is scored on its own and the functions return one value per slice, shape ``(B,)``.
  Complex ``(B, H, W)`` or 2-channel ``[real, imag]`` ``(B, 2, H, W)`` images go through
  :func:`magnitude` first (the torchmetrics wrappers do this for you).
* ``data_range`` defaults to the **maximum of the ground-truth slice** (per slice, not per batch,
  and max rather than max - min, since magnitudes are non-negative).
* PSNR and SSIM reproduce ``skimage.metrics.peak_signal_noise_ratio(target, pred,
  data_range=target.max())`` and ``structural_similarity(target, pred, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=target.max())`` to within 1e-4.
* Float32 and float64 inputs are supported and computed in their own dtype (results have the
  promoted input dtype); integer inputs are cast to the default float dtype. SSIM takes its
  second moments about the target slice mean so ``E[x²] - E[x]²`` stays accurate in float32.

Aggregation over a test set (mean ± std over slices, across batches and DDP ranks) is done by the
torchmetrics wrappers :class:`PSNR`, :class:`SSIM`, :class:`NMSE` and :class:`HFEN`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

__all__ = [
    "magnitude",
    "psnr",
    "ssim",
    "nmse",
    "hfen",
    "gaussian_kernel1d",
    "log_kernel2d",
    "SliceMetric",
    "PSNR",
    "SSIM",
    "NMSE",
    "HFEN",
]


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------


def magnitude(x: Tensor) -> Tensor:
    """Magnitude image ``(B, H, W)`` from any of the three image formats used in csmri.

    * complex ``(B, H, W)`` (or ``(B, 1, H, W)``) -> ``|x|``;
    * real 2-channel ``(B, 2, H, W)`` with channels ``[real, imag]`` -> ``sqrt(re² + im²)``;
    * real ``(B, H, W)`` is returned unchanged (it is taken to be a magnitude already);
      real ``(B, 1, H, W)`` loses its channel axis.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"magnitude() expects a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"complex images must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
        return x.abs()
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 2:
        return torch.hypot(x[:, 0], x[:, 1])
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(
        "expected a real magnitude (B, H, W) / (B, 1, H, W), a real [real, imag] (B, 2, H, W) "
        f"or a complex (B, H, W) image, got a real tensor of shape {tuple(x.shape)}"
    )


def _as_slices(x: Tensor, name: str) -> Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` real tensor -> ``(B, H, W)`` floating tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name} is complex; image metrics take real magnitudes, convert with magnitude() first")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def _check_pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and normalise a (pred, target) pair to two ``(B, H, W)`` tensors of one float dtype."""
    p, t = _as_slices(pred, "pred"), _as_slices(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target must have the same shape, got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )
    dtype = torch.promote_types(p.dtype, t.dtype)
    return p.to(dtype), t.to(dtype)


def _data_range(target: Tensor, data_range: float | Tensor | None) -> Tensor:
    """Per-slice data range ``(B,)``: the ground-truth slice max unless given explicitly."""
    if data_range is None:
        return target.amax(dim=(-2, -1))
    dr = torch.as_tensor(data_range, dtype=target.dtype, device=target.device)
    return dr.expand(target.shape[0]) if dr.ndim == 0 else dr.reshape(target.shape[0])


# --------------------------------------------------------------------------------------------------
# functional metrics, all (B, H, W) x (B, H, W) -> (B,)
# --------------------------------------------------------------------------------------------------


def psnr(pred: Tensor, target: Tensor, data_range: float | Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB per slice, ``10·log10(data_range² / MSE)`` -> ``(B,)``.

    ``data_range`` defaults to the max of each ground-truth slice (a float or ``(B,)`` tensor
    overrides it). Identical slices (MSE = 0) give ``+inf``; an all-zero target gives ``-inf``
    (``nan`` if pred is all-zero too).
    """
    p, t = _check_pair(pred, target)
    dr = _data_range(t, data_range)
    mse = (p - t).square().mean(dim=(-2, -1))
    return 10.0 * torch.log10(dr.square() / mse)


def nmse(pred: Tensor, target: Tensor) -> Tensor:
    """Normalised MSE per slice, ``||pred - target||² / ||target||²`` over each (H, W) slice -> ``(B,)``."""
    p, t = _check_pair(pred, target)
    return (p - t).square().sum(dim=(-2, -1)) / t.square().sum(dim=(-2, -1))


def gaussian_kernel1d(
    sigma: float,
    truncate: float = 3.5,
    dtype: torch.dtype = torch.float64,
    device: torch.device | None = None,
) -> Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate·sigma + 0.5)`` (scipy.ndimage's kernel)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float | Tensor | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity per slice (Wang et al. 2004) -> ``(B,)``.

    Convention: Gaussian window with ``sigma = 1.5`` truncated at 3.5σ (11×11 for σ = 1.5),
    ``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances, ``data_range`` = max of each
    ground-truth slice. As in scikit-image, the SSIM map is averaged only over pixels at least one
    window radius from the border; those pixels' windows lie inside the image, so the filtering is a
    separable *valid* convolution and no border padding is involved. Equals
    ``skimage.metrics.structural_similarity(target, pred, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=target.max())``. Images must be at least 11×11.
    Identical slices give 1; an all-zero target slice (data range 0, so C1 = C2 = 0) is degenerate
    (0, or ``nan`` where pred is locally flat too).
    """
    p, t = _check_pair(pred, target)
    dr = _data_range(t, data_range)

    g = gaussian_kernel1d(sigma, truncate=3.5, dtype=p.dtype, device=p.device)
    win = g.numel()
    h, w = p.shape[-2:]
    if h < win or w < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} (window for sigma={sigma}), got {h}x{w}")

    # (Co)variances are shift invariant: take moments of both images minus the target slice mean, so
    # E[x²] - E[x]² does not cancel catastrophically in float32 on images with a large offset.
    offset = t.mean(dim=(-2, -1), keepdim=True)
    pc, tc = p - offset, t - offset
    # first and second moments, filtered together: (B, 5, H, W) -> (B, 5, H - win + 1, W - win + 1)
    stack = torch.stack([pc, tc, pc * pc, tc * tc, pc * tc], dim=1)
    stack = F.conv2d(stack, g.view(1, 1, win, 1).expand(5, 1, win, 1), groups=5)
    stack = F.conv2d(stack, g.view(1, 1, 1, win).expand(5, 1, 1, win), groups=5)
    uxc, uyc, uxx, uyy, uxy = stack.unbind(dim=1)

    vx = uxx - uxc * uxc
    vy = uyy - uyc * uyc
    vxy = uxy - uxc * uyc
    ux, uy = uxc + offset, uyc + offset
    c1 = (k1 * dr).square().view(-1, 1, 1)
    c2 = (k2 * dr).square().view(-1, 1, 1)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(-2, -1))


def log_kernel2d(
    size: int = 15, sigma: float = 1.5, dtype: torch.dtype = torch.float64, device: torch.device | None = None
) -> Tensor:
    """Laplacian-of-Gaussian kernel ``(size, size)``, as MATLAB ``fspecial('log', size, sigma)``.

    ``h = exp(-r²/2σ²) / Σ exp(-r²/2σ²)``; ``k = h·(r² - 2σ²)/σ⁴``; then ``k - mean(k)`` so the
    kernel sums to zero (a constant image has zero response).
    """
    half = (size - 1) / 2
    x = torch.arange(size, dtype=torch.float64) - half
    r2 = x.view(-1, 1) ** 2 + x.view(1, -1) ** 2
    h = torch.exp(-r2 / (2 * sigma**2))
    h = torch.where(h < torch.finfo(torch.float64).eps * h.max(), torch.zeros_like(h), h)
    h = h / h.sum()
    k = h * (r2 - 2 * sigma**2) / sigma**4
    k = k - k.mean()
    return k.to(dtype=dtype, device=device)


def hfen(pred: Tensor, target: Tensor, sigma: float = 1.5, size: int = 15) -> Tensor:
    """High-frequency error norm per slice (Ravishankar & Bresler, IEEE TMI 2011) -> ``(B,)``.

    ``HFEN = ||LoG(pred) - LoG(target)||₂ / ||LoG(target)||₂`` with a 15×15 Laplacian-of-Gaussian,
    ``sigma = 1.5`` (:func:`log_kernel2d`, MATLAB ``fspecial('log', 15, 1.5)``), applied as a
    same-size filter with zero padding (MATLAB ``imfilter``'s default). 0 for identical images,
    larger for more loss of edges and fine detail; ``nan``/``inf`` if the target has no LoG response
    (e.g. a constant slice).
    """
    p, t = _check_pair(pred, target)
    # the error is filtered directly: LoG is linear, so LoG(p) - LoG(t) = LoG(p - t)
    filtered = _filter_same_zero(torch.stack([p - t, t], dim=1), log_kernel2d(size, sigma))
    norms = torch.linalg.vector_norm(filtered, dim=(-2, -1))  # (B, 2)
    return norms[:, 0] / norms[:, 1]


def _filter_same_zero(x: Tensor, kernel: Tensor) -> Tensor:
    """Correlate every channel of ``x`` (B, C, H, W) with an odd 2-D ``kernel``, zero padding, same size.

    The kernel is split into separable rank-1 terms by SVD (a LoG has rank 3), so the cost is a few
    1-D passes instead of one dense k×k convolution; exact up to floating-point rounding.
    """
    kh, kw = kernel.shape
    u, s, vh = torch.linalg.svd(kernel.to(torch.float64))
    rank = int((s > s[0] * 1e-12).sum())
    cols = (u[:, :rank] * s[:rank]).T.to(x)  # (rank, kh): vertical taps
    rows = vh[:rank].to(x)  # (rank, kw): horizontal taps
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    y = F.conv2d(flat, cols.view(rank, 1, kh, 1), padding=(kh // 2, 0))  # (BC, rank, H, W)
    y = F.conv2d(y, rows.view(rank, 1, 1, kw), padding=(0, kw // 2), groups=rank)
    return y.sum(dim=1).view(b, c, h, w)


# --------------------------------------------------------------------------------------------------
# torchmetrics wrappers: mean ± std over slices, across batches and DDP ranks
# --------------------------------------------------------------------------------------------------


class SliceMetric(Metric):
    """Mean (``compute()``) and std (``compute_std()``) of a per-slice metric over all slices seen.

    ``update(pred, target)`` takes magnitudes ``(B, H, W)`` / ``(B, 1, H, W)``, complex ``(B, H, W)``
    or 2-channel ``[real, imag]`` ``(B, 2, H, W)`` images (converted with :func:`magnitude`).
    States ``sum``, ``sum_sq`` (float64) and ``count`` are summed across DDP ranks, so the result
    equals the metric over the concatenation of all batches on all ranks. Non-finite per-slice
    values (e.g. PSNR = +inf of a perfect slice) propagate into the mean.
    Subclasses implement :meth:`per_slice`.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: bool | None = None

    sum: Tensor
    sum_sq: Tensor
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sum_sq", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_slice(self, pred: Tensor, target: Tensor) -> Tensor:
        """The metric of each slice, ``(B, H, W) x (B, H, W) -> (B,)``."""
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the slices of one batch."""
        values = self.per_slice(magnitude(pred), magnitude(target)).detach().to(torch.float64)
        self.sum += values.sum()
        self.sum_sq += values.square().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        """Mean over all slices (float64 scalar; ``nan`` before any update)."""
        return self.sum / self.count

    def compute_std(self, ddof: int = 0) -> Tensor:
        """Standard deviation over all slices (``ddof=0``: population std, as ``numpy.std``).

        Synchronises across DDP ranks like ``compute()`` does.
        """
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            n = self.count.to(torch.float64)
            mean = self.sum / n
            var = (self.sum_sq - n * mean.square()) / (n - ddof)
            return var.clamp_min(0.0).sqrt()


class PSNR(SliceMetric):
    """Mean/std of per-slice PSNR in dB (:func:`psnr`, data range = ground-truth slice max)."""

    higher_is_better = True

    def per_slice(self, pred: Tensor, target: Tensor) -> Tensor:
        return psnr(pred, target)


class SSIM(SliceMetric):
    """Mean/std of per-slice SSIM (:func:`ssim`: 11×11 Gaussian σ = 1.5, data range = gt slice max)."""

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(self, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sigma, self.k1, self.k2 = sigma, k1, k2

    def per_slice(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim(pred, target, sigma=self.sigma, k1=self.k1, k2=self.k2)


class NMSE(SliceMetric):
    """Mean/std of per-slice normalised MSE (:func:`nmse`)."""

    higher_is_better = False
    plot_lower_bound = 0.0

    def per_slice(self, pred: Tensor, target: Tensor) -> Tensor:
        return nmse(pred, target)


class HFEN(SliceMetric):
    """Mean/std of per-slice high-frequency error norm (:func:`hfen`, 15×15 LoG, σ = 1.5)."""

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(self, sigma: float = 1.5, size: int = 15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sigma, self.size = sigma, size

    def per_slice(self, pred: Tensor, target: Tensor) -> Tensor:
        return hfen(pred, target, sigma=self.sigma, size=self.size)
