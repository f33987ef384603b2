"""DLMRI baseline: batched OMP, K-SVD, patch extraction/assembly and the reconstructor itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from csmri.baselines import (
    DLMRI,
    assemble_patches,
    default_workers,
    extract_patches,
    ksvd,
    normalise_atoms,
    omp,
    patch_starts,
)
from csmri.config import config_dir
from csmri.data import MaskSampler
from csmri.data.sources.phantom import generate_patient
from csmri.physics import fft2c

FAST = {"outer_iters": 3, "ksvd_iters": 3, "progress": False}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny linear algebra: one intra-op thread is faster and steadier on busy CPUs (as DLMRI does)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _sparse_problem(n: int, k: int, p: int, nnz: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    D = normalise_atoms(torch.randn(n, k, generator=g, dtype=dtype))
    X = torch.zeros(k, p, dtype=dtype)
    for j in range(p):
        support = torch.randperm(k, generator=g)[: 1 + j % nnz]
        values = torch.randn(support.numel(), generator=g, dtype=dtype)
        X[support, j] = values / values.abs() * (0.5 + torch.rand(support.numel(), generator=g))
    return D, X


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_omp_recovers_sparse_codes(dtype: torch.dtype) -> None:
    D, X = _sparse_problem(n=32, k=64, p=300, nnz=3, dtype=dtype)
    recovered = omp(D, D @ X, max_atoms=6, tol=1e-10)
    assert recovered.shape == X.shape and recovered.dtype == dtype
    assert (recovered - X).abs().max() < 1e-5
    assert ((recovered != 0).sum(0) <= 6).all()


def test_omp_respects_atom_cap_and_tolerance() -> None:
    g = torch.Generator().manual_seed(1)
    D = normalise_atoms(torch.randn(16, 32, generator=g, dtype=torch.complex64))
    Y = torch.randn(16, 100, generator=g, dtype=torch.complex64)
    codes = omp(D, Y, max_atoms=4, tol=0.0)
    assert ((codes != 0).sum(0) == 4).all()
    tol = 0.5
    codes = omp(D, Y, max_atoms=16, tol=tol)
    residual = (Y - D @ codes).abs().square().sum(0)
    n_atoms = (codes != 0).sum(0)
    assert ((residual <= tol + 1e-5) | (n_atoms == 16)).all()
    assert (n_atoms < 16).any()
    assert (omp(D, torch.zeros(16, 5, dtype=torch.complex64), 4, 0.0) == 0).all()


def test_omp_survives_duplicate_atoms() -> None:
    g = torch.Generator().manual_seed(4)
    D = normalise_atoms(torch.randn(8, 10, generator=g, dtype=torch.complex64))
    D = torch.cat([D, D[:, :3]], dim=1)  # atoms 10..12 duplicate 0..2
    Y = D[:, :2] @ torch.randn(2, 50, generator=g, dtype=torch.complex64)
    codes = omp(D, Y, max_atoms=6, tol=0.0)
    assert torch.isfinite(torch.view_as_real(codes)).all()
    assert (Y - D @ codes).abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_ksvd_error_never_increases(dtype: torch.dtype) -> None:
    D_true, X = _sparse_problem(n=16, k=24, p=600, nnz=3, dtype=dtype, seed=2)
    g = torch.Generator().manual_seed(3)
    Y = D_true @ X + 0.01 * torch.randn(16, 600, generator=g, dtype=dtype)
    D0 = torch.randn(16, 24, generator=g, dtype=dtype)
    D, errors = ksvd(Y, D0, sparsity=3, iters=12)
    assert D.shape == (16, 24)
    assert torch.allclose(D.norm(dim=0), torch.ones(24), atol=1e-4)
    assert (errors[1:] <= errors[:-1] * (1 + 1e-4)).all(), errors
    assert errors[-1] < 0.8 * errors[0]


def test_patch_starts_cover_the_edges() -> None:
    assert patch_starts(10, 6, 1) == [0, 1, 2, 3, 4]
    assert patch_starts(12, 6, 2) == [0, 2, 4, 6]
    assert patch_starts(13, 6, 3) == [0, 3, 6, 7]
    with pytest.raises(ValueError):
        patch_starts(5, 6, 1)


@pytest.mark.parametrize(("shape", "stride"), [((32, 40), 1), ((32, 32), 2), ((31, 29), 3)])
def test_patches_round_trip(shape: tuple[int, int], stride: int) -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, *shape, generator=g, dtype=torch.complex64)
    patches = extract_patches(image, 6, stride)
    n_patches = len(patch_starts(shape[0], 6, stride)) * len(patch_starts(shape[1], 6, stride))
    assert patches.shape == (2, 36, n_patches) and patches.dtype == torch.complex64
    assert torch.equal(patches[1, :, 0].reshape(6, 6), image[1, :6, :6])
    assert torch.allclose(assemble_patches(patches, shape, 6, stride), image, atol=1e-6)
    real = image.real
    assert torch.allclose(assemble_patches(extract_patches(real, 6, stride), shape, 6, stride), real, atol=1e-6)


def _phantom_batch(slices: list[int], size: int = 48) -> dict:
    volume = generate_patient(0, size=size, n_slices=6)
    target = torch.stack([torch.from_numpy(volume.image[s]) for s in slices])
    target = target / target.abs().amax(dim=(-2, -1), keepdim=True)
    keys = [f"p/{i}" for i in range(len(slices))]
    return MaskSampler(acceleration=4).simulate({"target": target, "key": keys}, train=False)


def _nmse(x: torch.Tensor, target: torch.Tensor) -> float:
    return float((x - target).abs().square().sum() / target.abs().square().sum())


def test_dlmri_improves_zero_filled_and_is_data_consistent() -> None:
    batch = _phantom_batch([3])
    recon = DLMRI(**(FAST | {"outer_iters": 5})).reconstruct(batch)
    assert recon.shape == batch["target"].shape and recon.dtype == torch.complex64
    assert _nmse(recon, batch["target"]) < 0.95 * _nmse(batch["zero_filled"], batch["target"])
    sampled = batch["mask"] == 1
    assert (fft2c(recon) - batch["kspace"])[sampled].abs().max() < 1e-4


def test_dlmri_weighted_dc_runs() -> None:
    batch = _phantom_batch([3], size=32)
    recon = DLMRI(nu=10.0, outer_iters=1, ksvd_iters=1, progress=False).reconstruct(batch)
    assert torch.isfinite(torch.view_as_real(recon)).all()


def test_dlmri_is_deterministic_and_batch_independent() -> None:
    batch = _phantom_batch([2, 3], size=32)
    method = DLMRI(outer_iters=2, ksvd_iters=2, stride=2, progress=False)
    together = method.reconstruct(batch)
    assert torch.equal(together, method.reconstruct(batch))
    for i in range(2):
        alone = {k: (v[i : i + 1] if torch.is_tensor(v) else v[i : i + 1]) for k, v in batch.items()}
        assert torch.equal(method.reconstruct(alone)[0], together[i])


def test_dlmri_non_square_image() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 32, 20, generator=g, dtype=torch.complex64)
    batch = MaskSampler(acceleration=4).simulate({"target": target, "key": ["x/0"]}, train=False)
    recon = DLMRI(outer_iters=1, ksvd_iters=1, stride=3, progress=False).reconstruct(batch)
    assert recon.shape == (1, 32, 20)
    assert (fft2c(recon) - batch["kspace"])[batch["mask"] == 1].abs().max() < 1e-4


def test_dlmri_defaults_and_config() -> None:
    method = instantiate(OmegaConf.load(config_dir() / "method" / "dlmri.yaml"))
    assert isinstance(method, DLMRI)
    assert (method.sparsity, method.max_atoms, method.n_train_patches) == (7, 14, 7200)
    assert method.error_threshold(0) == pytest.approx(0.046) and method.error_threshold(20) == pytest.approx(0.0322)
    with pytest.raises(ValueError):
        DLMRI(stride=0)
    tiny = {
        "kspace": torch.zeros(1, 6, 6, dtype=torch.complex64),
        "mask": torch.ones(1, 6, 6),
        "zero_filled": torch.ones(1, 6, 6, dtype=torch.complex64),
    }
    with pytest.raises(ValueError, match="smaller than"):
        DLMRI(patch_size=8, progress=False).reconstruct(tiny)


def test_error_threshold_scale_multiplies_the_released_schedule() -> None:
    released = (0.046, 0.046, 0.046, 0.046, 0.0322)  # 1.15 * 0.02 * [2, 2, 2, 2, 1.4] of the released code
    doubled = DLMRI(error_threshold_scale=2, progress=False)
    assert [doubled.error_threshold(i) for i in (0, 3, 4, 9)] == pytest.approx([0.092, 0.092, 0.0644, 0.0644])
    assert DLMRI(error_threshold=0.01, error_threshold_scale=3).error_thresholds == pytest.approx((0.03,))
    with pytest.raises(ValueError, match="error_threshold_scale > 0"):
        DLMRI(error_threshold_scale=0)
    batch = _phantom_batch([3], size=32)
    scaled = DLMRI(error_threshold_scale=2, **FAST).reconstruct(batch)
    assert torch.equal(scaled, DLMRI(error_threshold=[2 * t for t in released], **FAST).reconstruct(batch))
    assert not torch.equal(scaled, DLMRI(**FAST).reconstruct(batch))


def test_dlmri_pool_equals_serial_bitwise() -> None:
    batch = _phantom_batch([1, 2, 3], size=32)
    settings = {"outer_iters": 2, "ksvd_iters": 2, "stride": 2, "progress": False}
    serial = DLMRI(workers=1, **settings).reconstruct(batch)
    with DLMRI(workers=2, **settings) as pooled_method:
        pooled = pooled_method.reconstruct(batch)
        pool = pooled_method._pool
        assert pool is not None and pooled_method._pool_size == 2
        again = pooled_method.reconstruct(batch)  # the pool is reused across batches
        assert pooled_method._pool is pool
    assert pooled_method._pool is None  # closed on exit
    assert torch.equal(pooled, serial) and torch.equal(again, serial)


def test_dlmri_workers_setting() -> None:
    assert DLMRI(workers=None).workers == default_workers() >= 1
    assert DLMRI(workers=0).workers == default_workers()
    assert DLMRI(workers=3).workers == 3
    with pytest.raises(ValueError):
        DLMRI(workers=-1)
    method = DLMRI(workers=4, outer_iters=1, ksvd_iters=1, stride=3, progress=False)
    method.reconstruct(_phantom_batch([3], size=32))  # one slice: serial, no pool
    assert method._pool is None


# --------------------------------------------------------------------------------------------------
# Independent re-derivation of one DLMRI iteration in plain numpy (loops, exact SVD, lstsq)
# --------------------------------------------------------------------------------------------------


def _np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x), norm="ortho"))


def _np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k), norm="ortho"))


def _np_omp(D: np.ndarray, Y: np.ndarray, max_atoms: int, tol: float) -> np.ndarray:
    """Textbook error-thresholded OMP (Elad's OMPerr): add atoms while ||r||² > tol and < max_atoms."""
    X = np.zeros((D.shape[1], Y.shape[1]), dtype=D.dtype)
    for j in range(Y.shape[1]):
        y, support = Y[:, j], []
        r = y.copy()
        while np.vdot(r, r).real > tol and len(support) < max_atoms:
            scores = np.abs(D.conj().T @ r) ** 2
            scores[support] = -1
            support.append(int(np.argmax(scores)))
            coef = np.linalg.lstsq(D[:, support], y, rcond=None)[0]
            r = y - D[:, support] @ coef
            X[support, j] = coef
    return X


def _np_ksvd(Y: np.ndarray, D: np.ndarray, sparsity: int, iters: int, tol: float) -> np.ndarray:
    """K-SVD (sparsity-and-error OMP; exact rank-1 SVD per atom; unused atom <- worst-fit signal)."""
    D = D / np.linalg.norm(D, axis=0, keepdims=True)
    for _ in range(iters):
        X = _np_omp(D, Y, sparsity, tol)
        err = np.sum(np.abs(Y - D @ X) ** 2, axis=0)
        for k in range(D.shape[1]):
            users = np.nonzero(X[k])[0]
            if users.size == 0:
                worst = int(np.argmax(err))
                D[:, k] = Y[:, worst] / np.linalg.norm(Y[:, worst])
                err[worst] = -1
                continue
            E = Y[:, users] - D @ X[:, users] + np.outer(D[:, k], X[k, users])
            U, S, Vh = np.linalg.svd(E, full_matrices=False)
            D[:, k], X[k, users] = U[:, 0], S[0] * Vh[0]
    return D


def _np_dlmri_iteration(
    kspace: np.ndarray, mask: np.ndarray, p: int, sparsity: int, ksvd_iters: int, th: float, nu: float | None
) -> np.ndarray:
    """One DLMRI iteration from the zero-filled image, all patches (stride 1), K = n (PCA init only)."""
    zero_filled = _np_ifft2c(kspace * mask)
    scale = np.abs(zero_filled).max()  # thresholds are relative to the (zero-filled) peak
    image, measured = zero_filled / scale, kspace / scale
    H, W = image.shape
    n = p * p
    positions = [(i, j) for i in range(H - p + 1) for j in range(W - p + 1)]
    patches = np.stack([image[i : i + p, j : j + p].reshape(-1) for i, j in positions], axis=1)
    means = patches.mean(axis=0, keepdims=True)
    centred = patches - means
    tol = th**2 * n
    _, vectors = np.linalg.eigh(centred @ centred.conj().T)
    D = _np_ksvd(centred, vectors[:, ::-1].copy(), sparsity, ksvd_iters, tol)
    approx = D @ _np_omp(D, centred, 2 * sparsity, tol) + means
    total, weight = np.zeros_like(image), np.zeros((H, W))
    for (i, j), column in zip(positions, approx.T, strict=True):
        total[i : i + p, j : j + p] += column.reshape(p, p)
        weight[i : i + p, j : j + p] += 1
    k = _np_fft2c(total / weight)
    k = np.where(mask > 0, measured if nu is None else (k + nu * measured) / (1 + nu), k)
    return _np_ifft2c(k) * scale


def _tiny_complex_problem(size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth complex image with a non-trivial phase, its k-space and a random line mask."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    magnitude = 0.3 + (np.hypot(x - 0.5, y - 0.45) < 0.3) + 0.5 * (np.abs(x - 0.3) < 0.1) * (y > 0.5)
    image = magnitude * np.exp(1j * (2.0 * x - 1.5 * y)) + 0.05 * rng.standard_normal((size, size))
    mask = np.zeros((size, size))
    mask[rng.choice(size, size // 2, replace=False)] = 1
    mask[size // 2 - 1 : size // 2 + 1] = 1
    return _np_fft2c(image) * mask, mask


@pytest.mark.parametrize("nu", [None, 5.0])
def test_one_dlmri_iteration_matches_a_numpy_rederivation(nu: float | None) -> None:
    kspace, mask = _tiny_complex_problem()
    p, sparsity, ksvd_iters, th = 4, 3, 3, 0.06
    expected = _np_dlmri_iteration(kspace, mask, p, sparsity, ksvd_iters, th, nu)
    method = DLMRI(
        patch_size=p,
        n_atoms=p * p,
        sparsity=sparsity,
        error_threshold=th,
        n_train_patches=10**6,  # all patches train (the subset is then only a permutation)
        ksvd_iters=ksvd_iters,
        outer_iters=1,
        nu=nu,
        progress=False,
    )
    k = torch.from_numpy(kspace)
    start = torch.from_numpy(_np_ifft2c(kspace))
    assert torch.allclose(fft2c(start), k, atol=1e-12)  # same centred orthonormal convention
    got = method.reconstruct_image(k, torch.from_numpy(mask), start).numpy()
    assert np.abs(got - expected).max() < 1e-10 * np.abs(expected).max()
    # The error threshold is relative to the zero-filled peak: scaling the data scales the result.
    scaled = method.reconstruct_image(k * 7.0, torch.from_numpy(mask), start * 7.0).numpy()
    assert np.abs(scaled - 7.0 * got).max() < 1e-10 * np.abs(scaled).max()
    # The threshold matters here (the test would not see a wrong scaling otherwise).
    looser = _np_dlmri_iteration(kspace, mask, p, sparsity, ksvd_iters, 2 * th, nu)
    assert np.abs(looser - expected).max() > 1e-3 * np.abs(expected).max()


def test_nu_from_noise_matches_the_released_code_units() -> None:
    from csmri.baselines import nu_from_noise

    assert nu_from_noise(0.0, (128, 128)) is None
    # Noise of per-component std s in orthonormal k-space is complex std sqrt(2) s; MATLAB's fft2 is
    # sqrt(H W) times larger, so sigma = sqrt(2) s * 128 for a 128 x 128 image of peak 1.
    assert nu_from_noise(0.01, (128, 128)) == pytest.approx(140 / (2**0.5 * 0.01 * 128))
    assert nu_from_noise(0.01, (128, 128), peak=2.0) == pytest.approx(2 * nu_from_noise(0.01, (128, 128)))
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 64, dtype=torch.complex64, generator=g) * (0.01 * 2**0.5)  # as MaskSampler adds it
    matlab_sigma = float(noise.std()) * 64  # the same noise in an unnormalised 64 x 64 DFT
    assert 140 / matlab_sigma == pytest.approx(nu_from_noise(0.01, (64, 64)), rel=0.05)
