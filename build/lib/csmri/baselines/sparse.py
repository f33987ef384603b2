"""Sparse coding and dictionary learning in torch: batched OMP, K-SVD and the DLMRI dictionary init.

Conventions:

- signals are the **columns** of ``Y (n, P)``; a dictionary is ``D (n, K)`` with unit-norm columns
  (atoms); codes are ``X (K, P)`` with ``Y ≈ D X``;
- real and complex dtypes both work (complex: correlations ``D^H r``, atoms picked by ``|D^H r|``);
  ``D`` and ``Y`` must share dtype and device;
- error tolerances are bounds on the **squared** ℓ2 norm of each column's residual, ``||y - D x||² <= tol``.
"""

from __future__ import annotations

import torch

#: OMP stops a signal when the best new atom would remove less than this fraction of its energy.
_NEGLIGIBLE_GAIN = 1e-10


def normalise_atoms(D: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``D (n, K)`` with every column scaled to unit ℓ2 norm (zero columns stay zero)."""
    return D / D.norm(dim=0, keepdim=True).clamp_min(eps)


def _abs2(x: torch.Tensor) -> torch.Tensor:
    """Elementwise ``|x|²`` as a real tensor (no square root)."""
    if torch.is_complex(x):
        return torch.view_as_real(x).square().sum(-1)
    return x.square()


def _squared_norms(R: torch.Tensor, dim: int) -> torch.Tensor:
    return _abs2(R).sum(dim)


def _select_new_atoms(correlations: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The atom most correlated with each residual, never one already in ``support``.

    ``correlations (A, K)``, ``support (A, k)`` -> (atom index ``(A,)``, its ``|d^H r|²`` ``(A,)``).
    """
    score = _abs2(correlations)
    if support.shape[1] > 0:
        score = score.scatter(1, support, -1.0)
    best = score.max(dim=1)
    return best.indices, best.values


def _least_squares_on_support(gram: torch.Tensor, projections: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Solve ``G_S x = (D^H y)_S`` for every signal: ``support (A, k)`` -> coefficients ``(A, k)``."""
    gram_s = gram[support[:, :, None], support[:, None, :]]
    rhs = projections.gather(1, support)
    return torch.linalg.solve(gram_s, rhs.unsqueeze(-1)).squeeze(-1)


def omp(D: torch.Tensor, Y: torch.Tensor, max_atoms: int, tol: float = 0.0) -> torch.Tensor:
    """Error-thresholded orthogonal matching pursuit, batched over all signals.

    Args:
        D: dictionary ``(n, K)``, unit-norm columns.
        Y: signals ``(n, P)``.
        max_atoms: at most this many atoms per signal.
        tol: a signal stops as soon as its squared residual ``||y - D x||²`` is ``<= tol``
            (``0`` = sparsity-limited OMP), or when no unused atom correlates with its residual
            (``|d^H r|² <= 1e-10 ||y||²``, e.g. an exactly represented signal).

    Returns:
        Codes ``X (K, P)`` (same dtype as ``D``) with at most ``max_atoms`` non-zeros per column.

    The loop runs over atoms only: at step ``k`` every still-active signal has exactly ``k`` atoms,
    so the active signals' supports form one ``(A, k)`` tensor and their least-squares problems one
    batched ``(A, k, k)`` solve on the Gram matrix.
    """
    if D.ndim != 2 or Y.ndim != 2 or D.shape[0] != Y.shape[0]:
        raise ValueError(f"omp expects D (n, K) and Y (n, P), got {tuple(D.shape)} and {tuple(Y.shape)}")
    n_atoms, n_signals = D.shape[1], Y.shape[1]
    max_atoms = min(int(max_atoms), n_atoms, D.shape[0])
    codes = torch.zeros(n_signals, n_atoms, dtype=D.dtype, device=D.device)  # transposed: (P, K)
    signals = Y.mT  # (P, n)
    atoms = D.mT  # (K, n): row j is atom j
    gram = D.mH @ D
    projections = signals @ D.conj()  # (P, K): d_j^H y
    energy = _squared_norms(signals, 1)
    active = torch.nonzero(energy > tol).squeeze(1)
    support = torch.empty(active.numel(), 0, dtype=torch.long, device=D.device)
    residual = signals[active]
    for _ in range(max_atoms):
        new, gain = _select_new_atoms(residual @ D.conj(), support)
        # A residual (numerically) orthogonal to every unused atom cannot improve: stop that signal
        # rather than pick an arbitrary atom (which could make the Gram system singular).
        improves = gain > _NEGLIGIBLE_GAIN * energy[active]
        active, support, residual, new = active[improves], support[improves], residual[improves], new[improves]
        if active.numel() == 0:
            break
        support = torch.cat([support, new[:, None]], dim=1)
        coefficients = _least_squares_on_support(gram, projections[active], support)
        codes[active] = torch.zeros_like(codes[active]).scatter(1, support, coefficients)
        residual = signals[active] - torch.einsum("ak,akn->an", coefficients, atoms[support])
        keep = _squared_norms(residual, 1) > tol
        active, support, residual = active[keep], support[keep], residual[keep]
    return codes.mT.contiguous()


def _rank_one_approximation(
    E: torch.Tensor, start: torch.Tensor, squarings: int = 6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-1 fit ``d x`` of ``E (n, m)``, ``||d|| = 1``: power iteration on ``E E^H`` from ``start``.

    ``M = E E^H`` is squared ``squarings`` times (``M^64`` by default, divided by its trace each time), and
    ``d = M^64 start / ||.||``, ``x = d^H E``. For the PSD ``M`` the Rayleigh quotient of ``M^j start``
    never decreases with ``j``, so the fit is never worse than ``start`` with its optimal coefficients
    — K-SVD stays monotone — and it converges to the top singular pair. Only matrix products: no
    LAPACK eigensolver, which is slow for tiny matrices on busy multi-threaded CPUs.
    """
    M = E @ E.mH
    for _ in range(squarings):
        M = M / M.diagonal().real.sum().clamp_min(1e-30)  # PSD: trace >= top eigenvalue
        M = M @ M
    atom = M @ start
    norm = atom.norm()
    atom = torch.where(norm > 1e-20, atom / norm.clamp_min(1e-30), start)
    return atom, atom.conj() @ E


def _replace_unused_atom(D: torch.Tensor, k: int, Y: torch.Tensor, residual_norms: torch.Tensor) -> None:
    """Set atom ``k`` to the worst-represented signal, normalised; that signal is not picked again."""
    worst = int(residual_norms.argmax())
    norm = float(Y[:, worst].norm())
    if float(residual_norms[worst]) <= 0 or norm <= 0:
        return  # everything is represented exactly: keep the atom
    D[:, k] = Y[:, worst] / norm
    residual_norms[worst] = -1.0


def _update_atoms(D: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """One K-SVD dictionary pass, in place on ``D`` and ``X``; returns the residual ``Y - D X``.

    Each atom and its non-zero coefficients are replaced by the rank-1 fit of the residual restricted
    to the atom's users (signals with a non-zero coefficient), so the representation error never
    increases. An unused atom becomes the worst-represented training signal, normalised (this leaves
    the error unchanged; each signal replaces at most one atom per pass).
    """
    R = Y - D @ X
    residual_norms = _squared_norms(R, 0)
    for k in range(D.shape[1]):
        users = torch.nonzero(X[k]).squeeze(1)
        if users.numel() == 0:
            _replace_unused_atom(D, k, Y, residual_norms)
            continue
        E = R[:, users] + D[:, k : k + 1] @ X[k : k + 1, users]
        atom, coefficients = _rank_one_approximation(E, D[:, k])
        D[:, k] = atom
        X[k, users] = coefficients
        R[:, users] = E - atom[:, None] @ coefficients[None, :]
    return R


def ksvd(
    Y: torch.Tensor, D0: torch.Tensor, sparsity: int, iters: int, tol: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-SVD (Aharon, Elad & Bruckstein 2006) on training signals ``Y (n, N)`` from ``D0 (n, K)``.

    Each iteration: OMP sparse coding (``<= sparsity`` atoms, squared-residual tolerance ``tol`` —
    ``tol > 0`` is the sparsity-and-error variant DLMRI uses), then a sequential rank-1 update of every
    atom with its coefficients.

    Returns:
        The learned dictionary ``(n, K)`` (unit-norm atoms) and the representation errors
        ``||Y - D X||_F`` after each iteration's dictionary update, a float64 tensor ``(iters,)``.
    """
    D = normalise_atoms(D0.to(Y.dtype).clone())
    errors = torch.zeros(iters, dtype=torch.float64)
    for it in range(iters):
        X = omp(D, Y, sparsity, tol)
        R = _update_atoms(D, X, Y)
        errors[it] = float(R.norm())
    return D, errors


def initial_dictionary(Y: torch.Tensor, n_atoms: int, generator: torch.Generator) -> torch.Tensor:
    """DLMRI's K-SVD initialisation from training signals ``Y (n, N)``: PCA basis plus random signals.

    The eigenvectors of ``Y Y^H`` (decreasing eigenvalue) give the first ``min(K, n)`` atoms; when
    ``K > n`` the rest are randomly chosen (normalised) training signals, drawn with ``generator``
    (a CPU generator, so the choice is the same on every device). Returns ``(n, K)`` unit-norm atoms.
    """
    n = Y.shape[0]
    _, vectors = torch.linalg.eigh(Y @ Y.mH)
    basis = vectors.flip(-1)[:, : min(n_atoms, n)]
    if n_atoms <= n:
        return basis
    n_extra = n_atoms - n
    picks = torch.randperm(Y.shape[1], generator=generator)[:n_extra].to(Y.device)
    extra = torch.zeros(n, n_extra, dtype=Y.dtype, device=Y.device)
    extra[:, : picks.numel()] = Y[:, picks]
    # Too few signals, or all-zero ones (flat patches): random directions instead, never a zero atom.
    noise = torch.randn(n, n_extra, generator=generator).to(Y.device, Y.dtype)
    extra = torch.where(extra.norm(dim=0, keepdim=True) > 1e-8, extra, noise)
    return normalise_atoms(torch.cat([basis, extra], dim=1))
