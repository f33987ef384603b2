"""Tests for csmri.metrics.image: agreement with scikit-image / numpy references, conventions, wrappers."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from csmri.metrics.image import (
    HFEN,
    NMSE,
    PSNR,
    SSIM,
    SliceMetric,
    hfen,
    log_kernel2d,
    magnitude,
    nmse,
    psnr,
    ssim,
)

SHAPES = [(32, 32), (64, 48)]
GT_MAXES = [1.0, 0.3]
DTYPES = [torch.float32, torch.float64]
KINDS = ["random", "structured", "identical"]

# --------------------------------------------------------------------------------------------------
# reference images (numpy float64) and references
# --------------------------------------------------------------------------------------------------


def structured_image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Phantom-like slice: dark background, an ellipse with inner blobs, a smooth shading."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    yn, xn = (y - h / 2) / (h / 2), (x - w / 2) / (w / 2)
    img = np.where(xn**2 / 0.8**2 + yn**2 / 0.9**2 < 1, 0.6, 0.0)
    for _ in range(4):
        cy, cx, r = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.08, 0.25)
        img = np.where((xn - cx) ** 2 + (yn - cy) ** 2 < r**2, rng.uniform(0.2, 1.0), img)
    img = img * (1 + 0.2 * xn)
    return np.clip(ndimage.gaussian_filter(img, 0.7), 0, None)


def make_pair(kind: str, shape: tuple[int, int], gt_max: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, target) float64 magnitudes, target scaled so that target.max() == gt_max."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        target = rng.random(shape)
    else:
        target = structured_image(shape, rng)
    target = target / target.max() * gt_max
    if kind == "identical":
        return target.copy(), target
    noise = 0.05 * gt_max * rng.standard_normal(shape)
    pred = np.abs(ndimage.gaussian_filter(target, 0.8) + noise)
    return pred, target


def sk_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    return structural_similarity(
        target,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=target.max(),
    )


def np_log_kernel(size: int = 15, sigma: float = 1.5) -> np.ndarray:
    """MATLAB fspecial('log', size, sigma), written out in numpy."""
    half = (size - 1) / 2
    x, y = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    h = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    h[h < np.finfo(float).eps * h.max()] = 0
    h /= h.sum()
    h1 = h * (x**2 + y**2 - 2 * sigma**2) / sigma**4
    return h1 - h1.sum() / h1.size


def np_hfen(pred: np.ndarray, target: np.ndarray) -> float:
    k = np_log_kernel()
    lp = ndimage.correlate(pred, k, mode="constant", cval=0.0)
    lt = ndimage.correlate(target, k, mode="constant", cval=0.0)
    return float(np.linalg.norm(lp - lt) / np.linalg.norm(lt))


def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """One numpy slice -> (1, H, W) tensor."""
    return torch.as_tensor(a, dtype=dtype)[None]


# --------------------------------------------------------------------------------------------------
# functional metrics vs scikit-image / numpy
# --------------------------------------------------------------------------------------------------

grid = pytest.mark.parametrize(
    "kind,shape,gt_max,dtype",
    [(k, s, m, d) for k in KINDS for s in SHAPES for m in GT_MAXES for d in DTYPES],
    ids=lambda v: str(v).replace("torch.", "").replace(" ", ""),
)


@grid
def test_psnr_matches_skimage(kind: str, shape: tuple[int, int], gt_max: float, dtype: torch.dtype) -> None:
    pred, target = make_pair(kind, shape, gt_max)
    out = psnr(t(pred, dtype), t(target, dtype))
    assert out.shape == (1,) and out.dtype == dtype
    if kind == "identical":
        assert torch.isposinf(out).all()  # documented: identical slices give +inf dB
        return
    ref = peak_signal_noise_ratio(target, pred, data_range=target.max())
    assert abs(out.item() - ref) < 1e-4


@grid
def test_ssim_matches_skimage(kind: str, shape: tuple[int, int], gt_max: float, dtype: torch.dtype) -> None:
    pred, target = make_pair(kind, shape, gt_max)
    out = ssim(t(pred, dtype), t(target, dtype))
    assert out.shape == (1,) and out.dtype == dtype
    assert abs(out.item() - sk_ssim(pred, target)) < 1e-4
    if kind == "identical":
        assert abs(out.item() - 1.0) < 1e-6


@grid
def test_nmse_matches_numpy_and_skimage(kind: str, shape: tuple[int, int], gt_max: float, dtype: torch.dtype) -> None:
    pred, target = make_pair(kind, shape, gt_max)
    out = nmse(t(pred, dtype), t(target, dtype))
    assert out.shape == (1,) and out.dtype == dtype
    ref = np.sum((pred - target) ** 2) / np.sum(target**2)
    assert abs(out.item() - ref) < 1e-4 * max(ref, 1e-3)
    assert abs(out.item() - normalized_root_mse(target, pred, normalization="euclidean") ** 2) < 1e-6
    if kind == "identical":
        assert out.item() == 0.0


def test_ssim_offset_image_float32_accuracy() -> None:
    """Bright, nearly flat slices stress E[x²] - E[x]²; float32 must still match float64 skimage."""
    rng = np.random.default_rng(3)
    target = 0.97 + 0.03 * ndimage.gaussian_filter(rng.random((64, 48)), 1.0)
    pred = target + 0.002 * rng.standard_normal(target.shape)
    out = ssim(t(pred, torch.float32), t(target, torch.float32))
    assert abs(out.item() - sk_ssim(pred, target)) < 1e-5


def test_explicit_data_range() -> None:
    pred, target = make_pair("structured", (32, 32), 0.3)
    p, g = t(pred, torch.float64), t(target, torch.float64)
    assert abs(psnr(p, g, data_range=1.0).item() - peak_signal_noise_ratio(target, pred, data_range=1.0)) < 1e-6
    ref = structural_similarity(
        target, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert abs(ssim(p, g, data_range=1.0).item() - ref) < 1e-6


# --------------------------------------------------------------------------------------------------
# batching, shapes, errors
# --------------------------------------------------------------------------------------------------


def batch(dtype: torch.dtype = torch.float64, shape: tuple[int, int] = (64, 48)) -> tuple[torch.Tensor, torch.Tensor]:
    """Four slices of different kinds and ground-truth maxima, (4, H, W)."""
    pairs = [
        make_pair("random", shape, 1.0, seed=1),
        make_pair("structured", shape, 0.3, seed=2),
        make_pair("structured", shape, 1.0, seed=3),
        make_pair("random", shape, 0.05, seed=4),
    ]
    pred = torch.as_tensor(np.stack([p for p, _ in pairs]), dtype=dtype)
    target = torch.as_tensor(np.stack([g for _, g in pairs]), dtype=dtype)
    return pred, target


@pytest.mark.parametrize("fn", [psnr, ssim, nmse, hfen], ids=lambda f: f.__name__)
def test_batch_equals_per_slice(fn) -> None:
    pred, target = batch(torch.float64)
    out = fn(pred, target)
    assert out.shape == (4,) and out.dtype == torch.float64
    singles = torch.cat([fn(pred[i : i + 1], target[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(out, singles, rtol=1e-10, atol=1e-12)
    # float32 batches agree with float64 to float32 precision
    torch.testing.assert_close(fn(pred.float(), target.float()), out.float(), rtol=1e-5, atol=1e-6)
    # (B, 1, H, W) is accepted and gives the same numbers
    torch.testing.assert_close(fn(pred[:, None], target[:, None]), out)
    torch.testing.assert_close(fn(pred[:, None], target), out)


def test_data_range_is_per_slice_not_per_batch() -> None:
    """Rescaling one slice of the batch must not change the other slices' PSNR/SSIM."""
    pred, target = batch()
    scaled_p, scaled_t = pred.clone(), target.clone()
    scaled_p[0] *= 7.0
    scaled_t[0] *= 7.0
    for fn in (psnr, ssim):
        a, b = fn(pred, target), fn(scaled_p, scaled_t)
        torch.testing.assert_close(a, b)  # scale-invariant per slice, and slices 1..3 untouched
    # and each slice uses its own max: slice 3 has gt max 0.05
    p3, t3 = pred[3].numpy(), target[3].numpy()
    assert abs(psnr(pred, target)[3].item() - peak_signal_noise_ratio(t3, p3, data_range=t3.max())) < 1e-4


@pytest.mark.parametrize("fn", [psnr, ssim, nmse, hfen], ids=lambda f: f.__name__)
def test_shape_errors(fn) -> None:
    a = torch.rand(2, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        fn(a, torch.rand(2, 32, 30))
    with pytest.raises(ValueError, match="same shape"):
        fn(a, torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        fn(torch.rand(32, 32), torch.rand(32, 32))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        fn(torch.rand(2, 2, 32, 32), torch.rand(2, 2, 32, 32))
    with pytest.raises(TypeError, match="magnitude"):
        fn(torch.rand(2, 32, 32, dtype=torch.complex64), torch.rand(2, 32, 32, dtype=torch.complex64))


def test_ssim_too_small() -> None:
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 10, 32), torch.rand(1, 10, 32))


def test_mixed_dtypes_promote() -> None:
    pred, target = batch(torch.float32)
    out = psnr(pred, target.double())
    assert out.dtype == torch.float64


# --------------------------------------------------------------------------------------------------
# HFEN
# --------------------------------------------------------------------------------------------------


def test_log_kernel() -> None:
    k = log_kernel2d()
    assert k.shape == (15, 15)
    assert abs(k.sum().item()) < 1e-12
    np.testing.assert_allclose(k.numpy(), np_log_kernel(), atol=1e-15)
    torch.testing.assert_close(k, k.T)
    assert k[7, 7] < 0  # centre of a LoG is negative


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_hfen_matches_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    pred, target = make_pair("structured", shape, 0.3)
    out = hfen(t(pred, dtype), t(target, dtype))
    assert out.dtype == dtype
    assert abs(out.item() - np_hfen(pred, target)) < 1e-5


def test_hfen_zero_for_identical_and_grows_with_blur() -> None:
    _, target = make_pair("structured", (64, 48), 1.0)
    g = t(target, torch.float64)
    assert hfen(g, g).item() == 0.0
    values = [hfen(t(ndimage.gaussian_filter(target, s), torch.float64), g).item() for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(values[:-1], values[1:], strict=True)), values
    assert values[0] > 0


# --------------------------------------------------------------------------------------------------
# magnitude()
# --------------------------------------------------------------------------------------------------


def test_magnitude_formats() -> None:
    gen = torch.Generator().manual_seed(0)
    re, im = torch.randn(3, 16, 12, generator=gen), torch.randn(3, 16, 12, generator=gen)
    expected = torch.sqrt(re**2 + im**2)
    torch.testing.assert_close(magnitude(torch.complex(re, im)), expected)
    torch.testing.assert_close(magnitude(torch.stack([re, im], dim=1)), expected)
    torch.testing.assert_close(magnitude(torch.complex(re, im)[:, None]), expected)
    real = expected.clone()
    assert magnitude(real) is real  # real (B, H, W) passes through untouched
    torch.testing.assert_close(magnitude(real[:, None]), real)
    assert magnitude(torch.complex(re, im).to(torch.complex128)).dtype == torch.float64
    with pytest.raises(ValueError):
        magnitude(torch.randn(3, 3, 16, 12))
    with pytest.raises(ValueError):
        magnitude(torch.randn(16, 12))


# --------------------------------------------------------------------------------------------------
# torchmetrics wrappers
# --------------------------------------------------------------------------------------------------

WRAPPERS = [(PSNR, psnr), (SSIM, ssim), (NMSE, nmse), (HFEN, hfen)]


@pytest.mark.parametrize("cls,fn", WRAPPERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_wrapper_accumulates_like_concatenation(cls: type[SliceMetric], fn) -> None:
    pred, target = batch(torch.float32)
    metric = cls()
    metric.update(pred[:3], target[:3])
    metric.update(pred[3:], target[3:])
    values = fn(pred, target).double().numpy()
    assert abs(metric.compute().item() - values.mean()) < 1e-9 * max(1.0, abs(values.mean()))
    np.testing.assert_allclose(metric.compute_std().item(), values.std(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(metric.compute_std(ddof=1).item(), values.std(ddof=1), rtol=1e-7, atol=1e-9)
    assert metric.count.item() == 4

    # the same metric object over the concatenation in one batch
    whole = cls()
    whole.update(pred, target)
    torch.testing.assert_close(whole.compute(), metric.compute())
    torch.testing.assert_close(whole.compute_std(), metric.compute_std())

    metric.reset()
    assert metric.count.item() == 0


@pytest.mark.parametrize("cls", [PSNR, SSIM, NMSE, HFEN], ids=lambda c: c.__name__)
def test_wrapper_accepts_complex_and_two_channel(cls: type[SliceMetric]) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 32, 32, dtype=torch.float64, generator=gen)
    y = x + 0.1 * torch.randn(2, 2, 32, 32, dtype=torch.float64, generator=gen)
    ref, as_complex, as_channels = cls(), cls(), cls()
    ref.update(magnitude(y), magnitude(x))
    as_channels.update(y, x)
    as_complex.update(torch.complex(y[:, 0], y[:, 1]), torch.complex(x[:, 0], x[:, 1]))
    torch.testing.assert_close(as_channels.compute(), ref.compute())
    torch.testing.assert_close(as_complex.compute(), ref.compute())


def test_wrapper_flags() -> None:
    assert PSNR.higher_is_better and SSIM.higher_is_better
    assert NMSE.higher_is_better is False and HFEN.higher_is_better is False
    for cls in (PSNR, SSIM, NMSE, HFEN):
        assert cls.full_state_update is False
        m = cls()
        assert m._reductions.keys() == {"sum", "sum_sq", "count"}


# --------------------------------------------------------------------------------------------------
# DDP: shards on two ranks must give the metric over the concatenation, on every rank
# --------------------------------------------------------------------------------------------------

SHARDS = [slice(0, 1), slice(1, 4)]  # uneven on purpose


def _check_synced(results: dict[str, tuple[float, float, int]], rank: int) -> None:
    pred, target = batch(torch.float32)
    assert results
    for cls, fn in WRAPPERS:
        if cls.__name__ not in results:
            continue
        values = fn(pred, target).double().numpy()
        mean, std, count = results[cls.__name__]
        assert math.isclose(mean, values.mean(), rel_tol=1e-9, abs_tol=1e-12), cls.__name__
        assert math.isclose(std, values.std(), rel_tol=1e-6, abs_tol=1e-12), cls.__name__
        assert count == len(range(4)[SHARDS[rank]])  # local state restored after the sync


def _fake_world(metrics: list[SliceMetric]) -> None:
    """Wire metrics up as the ranks of a fake process group: each all-gather returns every rank's state."""
    for me in metrics:

        def gather(tensor: torch.Tensor, group=None, me: SliceMetric = me) -> list[torch.Tensor]:
            name = next(n for n in me._defaults if getattr(me, n) is tensor)
            return [getattr(m, name) for m in metrics]

        me.dist_sync_fn = gather


def test_wrapper_sync_in_process() -> None:
    """Two 'ranks' in one process, synced through torchmetrics' reduction with a fake all-gather."""
    pred, target = batch(torch.float32)
    for cls, _ in WRAPPERS:
        ranks = [cls(distributed_available_fn=lambda: True) for _ in range(2)]
        _fake_world(ranks)
        for rank, m in enumerate(ranks):
            m.update(pred[SHARDS[rank]], target[SHARDS[rank]])
        for rank, m in enumerate(ranks):
            _check_synced({cls.__name__: (m.compute().item(), m.compute_std().item(), m.count.item())}, rank)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool (it hangs)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        pred, target = batch(torch.float32)
        results = {}
        for cls, _ in WRAPPERS:
            m = cls()
            m.update(pred[SHARDS[rank]], target[SHARDS[rank]])
            results[cls.__name__] = (m.compute().item(), m.compute_std().item(), m.count.item())
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork start method (spawn is too slow here)")
def test_wrapper_ddp_gloo(tmp_path) -> None:
    """Real torch.distributed (gloo, 2 forked CPU ranks) through torchmetrics' own all-gather."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo not available")
    ctx = mp.start_processes(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + 60
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail("DDP workers did not finish within 60 s")
    for rank in range(2):
        _check_synced(torch.load(tmp_path / f"rank{rank}.pt"), rank)


# --------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    pred, target = batch(dtype)
    for fn in (psnr, ssim, nmse, hfen):
        torch.testing.assert_close(fn(pred.cuda(), target.cuda()).cpu(), fn(pred, target), rtol=1e-5, atol=1e-5)
    m = SSIM().cuda()
    m.update(pred.cuda(), target.cuda())
    assert abs(m.compute().item() - ssim(pred, target).double().mean().item()) < 1e-5


def test_hfen_metric_passes_its_sigma_and_size_on():
    """The torchmetrics HFEN with another LoG width equals the reference HFEN at that width (not at the default)."""
    rng = np.random.default_rng(4)
    target = ndimage.gaussian_filter(rng.random((40, 40)), 2)
    pred = target + 0.05 * rng.standard_normal((40, 40))
    k = np_log_kernel(size=9, sigma=1.0)
    lp = ndimage.correlate(pred, k, mode="constant", cval=0.0)
    lt = ndimage.correlate(target, k, mode="constant", cval=0.0)
    expected = float(np.linalg.norm(lp - lt) / np.linalg.norm(lt))
    metric = HFEN(sigma=1.0, size=9)
    metric.update(t(pred, torch.float64), t(target, torch.float64))
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(np_hfen(pred, target), rel=1e-3)  # the default width gives another value


def test_psnr_with_a_given_data_range_scalar_or_per_slice():
    """``data_range`` as one number for every slice, or one per slice (B = 3 slices of 5 x 7 pixels, B != H, W)."""
    rng = np.random.default_rng(5)
    target, pred = rng.random((3, 5, 7)), rng.random((3, 5, 7))
    mse = ((pred - target) ** 2).mean(axis=(1, 2))
    out = psnr(torch.from_numpy(pred), torch.from_numpy(target), data_range=2.0)
    np.testing.assert_allclose(out.numpy(), 10 * np.log10(4.0 / mse), rtol=1e-12)
    ranges = np.array([1.0, 2.0, 4.0])
    out = psnr(torch.from_numpy(pred), torch.from_numpy(target), data_range=torch.from_numpy(ranges))
    np.testing.assert_allclose(out.numpy(), 10 * np.log10(ranges**2 / mse), rtol=1e-12)
