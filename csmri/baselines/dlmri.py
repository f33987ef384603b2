"""DLMRI (Ravishankar & Bresler, IEEE TMI 2011): adaptive patch dictionaries for CS-MRI, non-learned.

Per image, for ``outer_iters`` iterations, starting from the zero-filled image:

1. extract overlapping ``p x p`` patches (stride ``stride``) of the current estimate, remove each
   patch's mean, and learn a **complex** dictionary ``D (n, K)`` (``n = p²``) with K-SVD on a random
   subset of ``n_train_patches`` patches, initialised with the PCA basis of that subset (plus random
   patches when ``K > n``) — as in the released DLMRI code, complex patches are coded directly with a
   complex dictionary (no stacking of real and imaginary parts);
2. sparse-code **all** patches with error-thresholded OMP (``<= max_atoms = 2 T0`` atoms);
3. average the overlapping patch approximations (plus their means) into an image;
4. enforce k-space data consistency with :func:`csmri.physics.data_consistency` (hard for
   ``nu=None``, weighted otherwise).

Error threshold: the released code allows a squared residual ``th² n`` per patch, with the per-
iteration schedule ``th = 0.023 · [2, 2, 2, 2, 1.4, 1.4, ...]`` for images of peak magnitude 1. Here
each image and its k-space are divided by the zero-filled image's peak magnitude before the iterations
(and the result multiplied back), so ``th`` is relative to that peak; the same threshold is used during
K-SVD training (the code's "sparsity and error" K-SVD variant) and for the final sparse coding.

Parallelism: one slice is one long chain of tiny operations, run on one torch thread; the slices of a
batch go to a process pool (``workers``; 1 = serial in-process). The pool uses the ``spawn`` start method:
forking a process whose torch/OpenMP thread pools have been used can deadlock the child (a lock held by a
thread that does not exist in the child), and ``spawn`` — a fresh interpreter that imports this module —
is safe and available on every platform (``forkserver`` would also be safe, but not on Windows, and its
faster start-up does not matter here: the pool is created once, lazily, and reused across batches; each
slice takes tens of seconds). Every slice runs the same deterministic code on one thread in either mode,
so pooled results are bitwise equal to serial ones. :meth:`DLMRI.close` (or ``with DLMRI(...)``, or
garbage collection / interpreter exit) shuts the pool down. As with any ``spawn`` pool, a *script* that
reconstructs with ``workers != 1`` must guard its top level with ``if __name__ == "__main__":`` (the
workers import the main module); ``csmri`` entry points, ``python -m`` modules with a guard and pytest are
fine.

Deviations from the released code, kept on purpose: K-SVD updates atoms in index order (the code: a random
order) and has no "clear dictionary" step (replacing near-duplicate or rarely used atoms; unused atoms are
replaced here too); the rank-1 atom update is a converged power iteration rather than an SVD; the iterate
is normalised once by the zero-filled peak (the code renormalises it to peak 1 every iteration while its
measured k-space stays at the ground-truth scale, and clips patch-averaged pixels with ``|x| > 1`` to 1).

Conventions (:mod:`csmri.physics`): complex64 ``(B, H, W)`` images and centred orthonormal k-space,
float 0/1 masks ``(B, H, W)``.
"""

from __future__ import annotations

import multiprocessing
import os
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from csmri.baselines.patches import assemble_patches, extract_patches
from csmri.baselines.sparse import initial_dictionary, ksvd, omp
from csmri.physics import data_consistency, ifft2c

#: Per-iteration patch error thresholds of the released DLMRI code (1.15 · 0.02 · [2, 2, 2, 2, 1.4, ...]);
#: the last value repeats for later iterations.
DEFAULT_ERROR_THRESHOLDS: tuple[float, ...] = (0.046, 0.046, 0.046, 0.046, 0.0322)

#: A cheaper setting for many slices on few CPU cores: on 128 x 128 phantom slices at 4x, ~8x faster than
#: the defaults (~4 s vs ~33 s per slice, 1 thread) with an NMSE within ~2 % of theirs.
FAST_SETTINGS: dict[str, Any] = {"stride": 2, "ksvd_iters": 5}


# --------------------------------------------------------------------------------------------------
# DLMRI
# --------------------------------------------------------------------------------------------------


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch CPU ops on ``n`` intra-op threads (``None``: unchanged)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(previous)


def nu_from_noise(noise_std: float, shape: tuple[int, int], peak: float = 1.0, lam: float = 140.0) -> float | None:
    """The paper's DC weight ``ν = λ / σ`` for csmri's k-space noise; ``None`` (hard DC) when noiseless.

    The released DLMRI code (``La2 = Lambda / sigma``, ``Lambda = 140``) measures ``σ`` as the std of the
    complex noise in MATLAB's *unnormalised* ``fft2`` of the image scaled to peak magnitude 1. csmri's
    ``noise_std`` (:class:`csmri.data.MaskSampler`) is the std per real component in the *orthonormal*
    centred k-space of an image of peak magnitude ``peak``, so ``σ = √2 · noise_std · √(H W) / peak``. The
    DC formula ``(k + ν y) / (1 + ν)`` is scale-free, so this ``ν`` is used as is.
    """
    if noise_std < 0 or peak <= 0 or lam <= 0:
        raise ValueError(f"need noise_std >= 0, peak > 0, lam > 0; got {noise_std}, {peak}, {lam}")
    if noise_std == 0:
        return None
    sigma = 2**0.5 * noise_std * (shape[0] * shape[1]) ** 0.5 / peak
    return lam / sigma


def default_workers() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _reconstruct_slice(method: DLMRI, kspace: torch.Tensor, mask: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Pool task: one slice on CPU, with the method's thread setting (runs in a worker process)."""
    with torch.no_grad(), _torch_threads(method.num_threads):
        return method.reconstruct_image(kspace, mask, start)


def _shutdown_pool(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=True, cancel_futures=True)


class DLMRI:
    """DLMRI reconstructor: ``reconstruct(batch) -> (B, H, W)`` complex64 on the batch's device.

    Args:
        patch_size: patch side ``p`` (``n = p²`` pixels per patch).
        n_atoms: dictionary size ``K``.
        sparsity: K-SVD sparsity ``T0``; ``None`` = ``round(0.2 n)``.
        max_atoms: atom cap of the final error-thresholded OMP; ``None`` = ``2 T0``.
        error_threshold: per-pixel RMS patch residual ``th`` (a patch may keep squared error ``th² n``);
            a float for every iteration, a sequence per iteration (its last value repeats), or ``None``
            for :data:`DEFAULT_ERROR_THRESHOLDS`. Relative to the zero-filled image's peak magnitude.
        error_threshold_scale: multiplies every threshold of the schedule (> 0; 1 = as given). The released
            schedule reads as K-SVD's rule (a patch keeps a residual of ~1.15 times the noise) for a nominal
            noise of 2 % of the peak; on noisier data a larger scale, chosen on validation data, fits less of
            the noise and the aliasing back into the image.
        n_train_patches: K-SVD training patches per iteration (random subset); ``None`` = ``200 K``.
        ksvd_iters: K-SVD iterations per outer iteration.
        outer_iters: DLMRI iterations (dictionary learning + sparse coding + DC).
        stride: patch stride (1 in the paper; the last patch of each row/column is always added).
        nu: ``None`` for noiseless hard data consistency, else the weight of the weighted form; the paper's
            ``ν = 140 / σ`` for csmri's noise units is :func:`nu_from_noise`.
        seed: seeds the training-subset draws; every image uses the same seed, so a result does not
            depend on the batch it was in.
        progress: show a tqdm bar over images × outer iterations.
        num_threads: torch CPU threads while reconstructing (restored afterwards); ``None`` leaves
            torch's setting. Default 1: DLMRI is a long chain of tiny operations (36 x 36 matrices,
            batched 14 x 14 solves) for which intra-op threads mostly add synchronisation — on a busy
            2-core machine 2 threads were ~25x slower than 1. Parallelise over slices instead.
        workers: processes reconstructing the slices of a batch in parallel; ``None`` or ``0`` = the CPU
            cores available (:func:`default_workers`), ``1`` = serial in this process. At most one per
            slice of a batch. The pool (``spawn``) starts on the first batch with more than one slice and
            more than one worker, is reused, and stops at :meth:`close`. Pooled slices run on CPU (the
            result goes back to the batch's device); the results equal the serial ones bitwise.
    """

    def __init__(
        self,
        patch_size: int = 6,
        n_atoms: int = 36,
        sparsity: int | None = None,
        max_atoms: int | None = None,
        error_threshold: float | Sequence[float] | None = None,
        error_threshold_scale: float = 1.0,
        n_train_patches: int | None = None,
        ksvd_iters: int = 20,
        outer_iters: int = 15,
        stride: int = 1,
        nu: float | None = None,
        seed: int = 0,
        progress: bool = True,
        num_threads: int | None = 1,
        workers: int | None = None,
    ) -> None:
        n = patch_size * patch_size
        self.patch_size = patch_size
        self.n_atoms = n_atoms
        self.sparsity = round(0.2 * n) if sparsity is None else int(sparsity)
        self.max_atoms = 2 * self.sparsity if max_atoms is None else int(max_atoms)
        self.error_threshold_scale = float(error_threshold_scale)
        self.released_thresholds = error_threshold is None
        self.error_thresholds = tuple(self.error_threshold_scale * t for t in self._threshold_schedule(error_threshold))
        self.n_train_patches = 200 * n_atoms if n_train_patches is None else int(n_train_patches)
        self.ksvd_iters = ksvd_iters
        self.outer_iters = outer_iters
        self.stride = stride
        self.nu = nu
        self.seed = seed
        self.progress = progress
        self.num_threads = num_threads
        self.workers = default_workers() if not workers else int(workers)
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._finalizer: weakref.finalize | None = None
        self._validate()

    @staticmethod
    def _threshold_schedule(error_threshold: float | Sequence[float] | None) -> tuple[float, ...]:
        if error_threshold is None:
            return DEFAULT_ERROR_THRESHOLDS
        if isinstance(error_threshold, (int, float)):
            return (float(error_threshold),)
        return tuple(float(t) for t in error_threshold)

    def _validate(self) -> None:
        checks = {
            "patch_size >= 1": self.patch_size >= 1,
            "n_atoms >= 1": self.n_atoms >= 1,
            "sparsity >= 1": self.sparsity >= 1,
            "max_atoms >= 1": self.max_atoms >= 1,
            "error thresholds >= 0 (at least one)": len(self.error_thresholds) > 0 and min(self.error_thresholds) >= 0,
            "error_threshold_scale > 0": self.error_threshold_scale > 0,
            "n_train_patches >= 1": self.n_train_patches >= 1,
            "ksvd_iters >= 0": self.ksvd_iters >= 0,
            "outer_iters >= 0": self.outer_iters >= 0,
            "stride >= 1": self.stride >= 1,
            "nu is None or >= 0": self.nu is None or self.nu >= 0,
            "num_threads is None or >= 1": self.num_threads is None or self.num_threads >= 1,
            "workers >= 0 or None": self.workers >= 1,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid DLMRI settings: {', '.join(failed)}")

    def error_threshold(self, iteration: int) -> float:
        """Per-pixel RMS threshold ``th`` of outer iteration ``iteration`` (0-based)."""
        return self.error_thresholds[min(iteration, len(self.error_thresholds) - 1)]

    # -- public API ---------------------------------------------------------------------------------

    def reconstruct(self, batch: dict[str, Any]) -> torch.Tensor:
        """Reconstruct a simulated batch (``kspace``, ``mask``; ``zero_filled`` optional) -> ``(B, H, W)``."""
        kspace: torch.Tensor = batch["kspace"]
        mask: torch.Tensor = batch["mask"]
        if not torch.is_complex(kspace) or kspace.ndim != 3:
            raise ValueError(f"batch['kspace'] must be complex (B, H, W), got {tuple(kspace.shape)} {kspace.dtype}")
        start = batch.get("zero_filled")
        start = ifft2c(kspace) if start is None else start
        mask = mask.expand_as(kspace.real)
        n_images = kspace.shape[0]
        bar = tqdm(total=n_images * self.outer_iters, desc="DLMRI", disable=not self.progress, leave=False)
        with torch.no_grad(), bar:
            if min(self.workers, n_images) <= 1:
                with _torch_threads(self.num_threads):
                    images = [self.reconstruct_image(kspace[b], mask[b], start[b], bar) for b in range(n_images)]
            else:
                images = self._reconstruct_pooled(kspace, mask, start, bar)
        return torch.stack(images).to(device=kspace.device, dtype=torch.complex64)

    def _reconstruct_pooled(
        self, kspace: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, bar: tqdm
    ) -> list[torch.Tensor]:
        pool = self._get_pool(min(self.workers, kspace.shape[0]))
        cpu = [t.detach().cpu() for t in (kspace, mask, start)]
        futures: list[Future] = [
            pool.submit(_reconstruct_slice, self, cpu[0][b].clone(), cpu[1][b].clone(), cpu[2][b].clone())
            for b in range(kspace.shape[0])
        ]
        for future in futures:
            future.add_done_callback(lambda _: bar.update(self.outer_iters))
        try:
            return [future.result() for future in futures]
        except BrokenProcessPool:
            self.close()  # a dead worker breaks the pool for good: the next batch starts a new one
            raise

    def _get_pool(self, size: int) -> ProcessPoolExecutor:
        """The worker pool, started on first use; restarted larger if a later batch could use more workers."""
        if self._pool is not None and self._pool_size < size:
            self.close()
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=size, mp_context=context)
            self._pool_size = size
            self._finalizer = weakref.finalize(self, _shutdown_pool, self._pool)
        return self._pool

    def close(self) -> None:
        """Stop the worker pool (if any); the method stays usable and starts a new pool when needed."""
        if self._finalizer is not None:
            self._finalizer()  # shuts the pool down once; a no-op at exit afterwards
        self._pool, self._pool_size, self._finalizer = None, 0, None

    def __enter__(self) -> DLMRI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled into pool tasks without the pool itself."""
        state = self.__dict__.copy()
        state.update(_pool=None, _pool_size=0, _finalizer=None)
        return state

    def reconstruct_image(
        self, kspace: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, bar: tqdm | None = None
    ) -> torch.Tensor:
        """DLMRI for one image: ``kspace``/``start`` complex ``(H, W)``, ``mask`` ``(H, W)`` -> ``(H, W)``."""
        height, width = kspace.shape
        if min(height, width) < self.patch_size:
            raise ValueError(f"image {height}x{width} is smaller than the {self.patch_size}-pixel patch")
        scale = float(start.abs().max())
        if scale == 0.0:
            return start.clone()
        image, measured = start[None] / scale, kspace[None] / scale
        generator = torch.Generator().manual_seed(self.seed)
        for iteration in range(self.outer_iters):
            patched = self.patch_step(image[0], self.error_threshold(iteration), generator)
            image = data_consistency(patched[None], measured, mask[None], self.nu)
            if bar is not None:
                bar.update()
        return image[0] * scale

    def patch_step(self, image: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
        """Steps 1–3 on one complex image ``(H, W)``: learn, sparse-code, average -> ``(H, W)``."""
        patches = extract_patches(image[None], self.patch_size, self.stride)[0]  # (n, P)
        means = patches.mean(dim=0, keepdim=True)
        centred = patches - means
        tol = threshold**2 * centred.shape[0]
        dictionary = self.learn_dictionary(centred, tol, generator)
        codes = omp(dictionary, centred, self.max_atoms, tol)
        approximations = dictionary @ codes + means
        return assemble_patches(approximations[None], image.shape, self.patch_size, self.stride)[0]

    def learn_dictionary(self, centred: torch.Tensor, tol: float, generator: torch.Generator) -> torch.Tensor:
        """K-SVD on a random subset of the mean-removed patches ``(n, P)`` -> dictionary ``(n, K)``."""
        subset = torch.randperm(centred.shape[1], generator=generator)[: self.n_train_patches]
        training = centred[:, subset.to(centred.device)]
        initial = initial_dictionary(training, self.n_atoms, generator)
        dictionary, _ = ksvd(training, initial, self.sparsity, self.ksvd_iters, tol)
        return dictionary

    @property
    def provenance(self) -> str:
        """The settings that decide this reconstruction, for a results table's footnote."""
        scale = "" if self.error_threshold_scale == 1 else f"{self.error_threshold_scale:g} × "
        schedule = "the released schedule" if self.released_thresholds else "the given schedule"
        thresholds = ", ".join(f"{t:.4g}" for t in self.error_thresholds)
        consistency = "hard data consistency" if self.nu is None else f"weighted data consistency ν = {self.nu:g}"
        return (
            f"{self.outer_iters} iterations of {self.patch_size}×{self.patch_size} patches at stride {self.stride}, "
            f"{self.n_atoms} atoms, {self.ksvd_iters} K-SVD iterations, error thresholds {scale}{schedule} "
            f"({thresholds}, the last repeating), {consistency}"
        )

    def __repr__(self) -> str:
        return (
            f"DLMRI(patch_size={self.patch_size}, n_atoms={self.n_atoms}, sparsity={self.sparsity}, "
            f"max_atoms={self.max_atoms}, error_thresholds={self.error_thresholds}, "
            f"n_train_patches={self.n_train_patches}, ksvd_iters={self.ksvd_iters}, "
            f"outer_iters={self.outer_iters}, stride={self.stride}, nu={self.nu}, seed={self.seed}, "
            f"num_threads={self.num_threads}, workers={self.workers})"
        )
