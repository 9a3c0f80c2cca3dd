"""Batched linear algebra of small complex matrices ``(..., m, m)``.

Closed forms (cofactors) of determinants and inverse columns for m = 2 and 3,
where batched LAPACK calls spend more time in per-matrix overhead than in
arithmetic; ``np.linalg`` for larger m. Cofactors are not backward stable (a
Hermitian positive definite 3x3 of condition 3e9 got a negative determinant),
so Hermitian positive definite systems go through :func:`cholesky` and
:func:`solve_lower`, which loop over the m entries and are backward stable. A singular matrix gives
non-finite entries instead of an exception; callers keep their previous value there.
"""

from __future__ import annotations

import numpy as np


def det(a: np.ndarray) -> np.ndarray:
    """``det(a)`` ``(...,)`` of ``a`` ``(..., m, m)``."""
    m = a.shape[-1]
    if m == 2:
        return a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]
    if m == 3:
        return np.einsum("...i,...i->...", a[..., 0, :], _cofactor_row0(a))
    return np.linalg.det(a)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cross product of ``(..., 3)`` vectors, no conjugation (``np.cross`` is slower here)."""
    u0, u1, u2 = u[..., 0], u[..., 1], u[..., 2]
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0], axis=-1)


def _cofactor_row0(a: np.ndarray) -> np.ndarray:
    """Cofactors of the first row of 3x3 matrices, ``(..., 3)`` (= row 1 x row 2)."""
    return _cross(a[..., 1, :], a[..., 2, :])


def inv_column(a: np.ndarray, j: int) -> np.ndarray:
    """Column ``j`` of ``a^{-1}``, ``(..., m)``: the solution of ``a x = e_j``."""
    m = a.shape[-1]
    if m > 3:
        rhs = np.zeros(a.shape[:-1] + (1,), dtype=a.dtype)
        rhs[..., j, 0] = 1.0
        try:
            return np.linalg.solve(a, rhs)[..., 0]
        except np.linalg.LinAlgError:
            return _lapack_inv(a)[..., j]
    if m == 2:
        col = np.stack(
            [a[..., 1, 1], -a[..., 1, 0]] if j == 0 else [-a[..., 0, 1], a[..., 0, 0]], -1
        )
    else:
        col = _cross(a[..., (j + 1) % 3, :], a[..., (j + 2) % 3, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return col / det(a)[..., None]


def _lapack_inv(a: np.ndarray) -> np.ndarray:
    """``np.linalg.inv`` that marks singular matrices with NaN instead of raising."""
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        out = np.full_like(a, np.nan)
        flat_a, flat_out = a.reshape(-1, *a.shape[-2:]), out.reshape(-1, *a.shape[-2:])
        for i, mat in enumerate(flat_a):
            try:
                flat_out[i] = np.linalg.inv(mat)
            except np.linalg.LinAlgError:
                continue
        return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks of small matrices ``(..., m, k) @ (..., k, p)``, as ``k`` broadcast products.

    For tiny matrices this beats ``np.matmul``, which calls BLAS once per matrix.
    """
    out = a[..., :, 0, None] * b[..., None, 0, :]
    for j in range(1, a.shape[-1]):
        out += a[..., :, j, None] * b[..., None, j, :]
    return out


def cholesky(a: np.ndarray) -> np.ndarray:
    """Lower-triangular ``l`` ``(..., m, m)`` with ``l l^H = a`` for Hermitian positive definite ``a``.

    Entry by entry over the whole stack (m is small). Unlike an inverse by cofactors,
    it is backward stable however ill-conditioned ``a`` is; NaN where ``a`` is not
    numerically positive definite. Only the lower triangle of ``a`` is read.
    """
    m = a.shape[-1]
    low = np.zeros_like(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(m):
            pivot = a[..., j, j].real.copy()
            for k in range(j):
                pivot -= low[..., j, k].real ** 2 + low[..., j, k].imag ** 2
            diag = np.sqrt(np.where(pivot > 0, pivot, np.nan))
            low[..., j, j] = diag
            for i in range(j + 1, m):
                entry = a[..., i, j].copy()
                for k in range(j):
                    entry -= low[..., i, k] * low[..., j, k].conj()
                low[..., i, j] = entry / diag
    return low


def solve_lower(low: np.ndarray, b: np.ndarray, adjoint: bool = False) -> np.ndarray:
    """``x`` ``(..., m, k)`` with ``low x = b`` (or ``low^H x = b``) for lower-triangular ``low``.

    Forward (back) substitution, entry by entry over the whole stack.
    """
    m = low.shape[-1]
    x = np.empty(np.broadcast_shapes(low.shape[:-2], b.shape[:-2]) + b.shape[-2:], dtype=complex)
    if adjoint:
        for r in range(m - 1, -1, -1):
            acc = b[..., r, :].astype(complex)
            for c in range(r + 1, m):
                acc -= low[..., c, r, None].conj() * x[..., c, :]
            x[..., r, :] = acc / low[..., r, r, None].conj()
    else:
        for r in range(m):
            acc = b[..., r, :].astype(complex)
            for c in range(r):
                acc -= low[..., r, c, None] * x[..., c, :]
            x[..., r, :] = acc / low[..., r, r, None]
    return x
