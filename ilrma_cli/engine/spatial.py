"""The rank-1 spatial model's demixing-matrix updates: IP, IP2 and ISS.

They also run on extended demixing matrices ``[W, -G]`` ``(n_freq, n_sources, K)`` with
extended covariances ``(n_freq, n_sources, K, K)`` (:mod:`ilrma_cli.engine.taps`).

Layouts: demixing matrices ``demix`` ``(n_freq, n_sources, n_channels)`` whose row n
is ``w_n^H``; weighted covariances ``cov`` ``(n_freq, n_sources, n_ch, n_ch)`` with
``cov[f, n] = U_n = mean_t x x^H / b_n``
(:func:`ilrma_cli.engine.observation.weighted_covariances`).

Every rule minimises, with the variances fixed, the spatial part of the
negative log-likelihood ``sum_n w_n^H U_n w_n - 2 log|det W|`` (per frequency),
so each is a majorisation-minimisation step. The rules only need the
covariances, never the signals: each function updates ``demix`` in place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ilrma_cli.engine import linalg
from ilrma_cli.engine.observation import FLOOR


def steering_column(demix: np.ndarray, n: int) -> np.ndarray:
    """Column n of ``W^{-1}`` ``(n_freq, K)``, ``W`` = ``demix[..., :n_sources]``, zero-padded to ``K``.

    ``K = n_channels`` for a plain demixing matrix (then exactly ``W^{-1} e_n``); for an
    extended one ``[W, -G]`` (:mod:`ilrma_cli.engine.taps`) it is column n of the inverse
    of ``[[W, -G], [0, I]]``, whose determinant is ``det W``.
    """
    n_src, width = demix.shape[1], demix.shape[2]
    column = linalg.inv_column(demix[..., :n_src], n)
    if width == n_src:
        return column
    padded = np.zeros(column.shape[:-1] + (width,), dtype=column.dtype)
    padded[..., :n_src] = column
    return padded


def update_ip(demix: np.ndarray, cov: np.ndarray) -> None:
    """Iterative projection (Ono, WASPAA 2011): ``w_n = (W U_n)^{-1} e_n``, then ``w_n^H U_n w_n = 1``.

    Computed as ``w_n = U_n^{-1} q_n`` with ``q_n`` column n of ``W^{-1}``, through the
    Cholesky factor ``U_n = L L^H``: ``z = L^{-1} q_n``, ``w_n = L^{-H} z / |z|``
    (``w_n^H U_n w_n = |z|^2 / |z|^2``). ``U_n`` is often ill-conditioned (see
    :data:`ilrma_cli.engine.observation.LOADING`); the factor stays accurate where
    cofactors of ``W U_n`` do not.
    """
    low = linalg.cholesky(cov)  # (n_freq, n_src, n_ch, n_ch)
    for n in range(demix.shape[1]):
        z = linalg.solve_lower(low[:, n], steering_column(demix, n)[..., None])
        w = linalg.solve_lower(low[:, n], z, adjoint=True)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            w /= np.linalg.norm(z[..., 0], axis=-1)[:, None]
        ok = np.isfinite(w).all(axis=-1)
        demix[ok, n, :] = w[ok].conj()


def update_iss(demix: np.ndarray, cov: np.ndarray) -> None:
    """Iterative source steering (Scheibler & Ono, ICASSP 2020): rank-1 updates ``W -= v w_k^H``.

    With ``d_n = w_k^H U_n w_k``: ``v_n = w_n^H U_n w_k / d_n`` for ``n != k`` and
    ``v_k = 1 - d_k^{-1/2}``; the sums over frames are the covariances' quadratic forms.
    """
    for k in range(demix.shape[1]):
        row_k = demix[:, k, :]
        u_w = np.einsum("fnij,fj->fni", cov, row_k.conj())  # U_n w_k
        quad = np.einsum("fi,fni->fn", row_k, u_w).real  # d_n
        v = np.einsum("fni,fni->fn", demix, u_w) / np.maximum(quad, FLOOR)
        # A source silent at some frequency keeps its scale there instead of exploding.
        scale = quad[:, k]
        with np.errstate(divide="ignore", invalid="ignore"):
            v[:, k] = np.where(scale > FLOOR, 1.0 - 1.0 / np.sqrt(scale), 0.0)
        demix -= v[:, :, None] * row_k[:, None, :]


def _gram(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries ``(g00, g11, g01)`` of ``G = z^H z`` for ``z`` ``(n_freq, m, 2)``: real, real, complex."""
    z0, z1 = z[..., 0], z[..., 1]
    g00 = np.sum(z0.real**2 + z0.imag**2, axis=-1)
    g11 = np.sum(z1.real**2 + z1.imag**2, axis=-1)
    return g00, g11, np.sum(z0.conj() * z1, axis=-1)


def _gevp_pair(
    g_a: tuple[np.ndarray, np.ndarray, np.ndarray], g_b: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form 2x2 Hermitian generalised eigenvectors of ``G_a e = lambda G_b e``.

    The matrices come as entries ``(g00, g11, g01)`` (see :func:`_gram`), each ``(n_freq,)``.
    Returns ``(e_max, e_min)`` ``(n_freq, 2)`` for the larger and smaller eigenvalue;
    ``e_min`` is built ``G_b``-orthogonal to ``e_max``, which also covers a double root.
    Both matrices are brought to unit trace first: the eigenvectors do not change, and
    the floors then mean the same at any scale.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        a00, a11, a01 = (g / (g_a[0] + g_a[1]) for g in g_a)
        b00, b11, b01 = (g / (g_b[0] + g_b[1]) for g in g_b)
    det_a = a00 * a11 - np.abs(a01) ** 2
    det_b = b00 * b11 - np.abs(b01) ** 2
    mid = a00 * b11 + a11 * b00 - 2 * (a01 * b01.conj()).real
    disc = np.sqrt(np.maximum(mid**2 - 4 * det_a * det_b, 0.0))
    lam = (mid + disc) / (2 * np.maximum(det_b, FLOOR))
    # Null vectors of G_a - lam G_b from either row; the longer one is the accurate one.
    m00, m11, m01 = a00 - lam * b00, a11 - lam * b11, a01 - lam * b01
    from_row0 = np.stack([m01, -m00 + 0j], axis=-1)
    from_row1 = np.stack([m11 + 0j, -m01.conj()], axis=-1)
    norm0 = np.abs(m00) + np.abs(m01)
    norm1 = np.abs(m11) + np.abs(m01)
    e_max = np.where((norm0 >= norm1)[:, None], from_row0, from_row1)
    degenerate = ~(np.maximum(norm0, norm1) > 1e-12 * np.maximum(a00, a11))
    e_max[degenerate] = (1.0, 0.0)
    # e_min: orthogonal to G_b e_max.
    b_e0 = b00 * e_max[:, 0] + b01 * e_max[:, 1]
    b_e1 = b01.conj() * e_max[:, 0] + b11 * e_max[:, 1]
    e_min = np.stack([-b_e1.conj(), b_e0.conj()], axis=-1)
    return e_max, e_min


def _unit_quadratic(e: np.ndarray, g: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``e`` ``(n_freq, 2)`` scaled to ``e^H G e = 1`` (``G`` as entries, see :func:`_gram`).

    Not finite where ``e^H G e`` is zero (a singular ``W``).
    """
    g00, g11, g01 = g
    quad = g00 * np.abs(e[:, 0]) ** 2 + g11 * np.abs(e[:, 1]) ** 2
    quad += 2 * (e[:, 0].conj() * g01 * e[:, 1]).real
    with np.errstate(invalid="ignore", divide="ignore"):
        return e / np.sqrt(quad)[:, None]


def update_ip2(demix: np.ndarray, cov: np.ndarray) -> None:
    """Pairwise iterative projection (Ono, APSIPA 2012; pairs cycle for more sources).

    For the pair (i, j), with the other rows fixed, the optimum is ``w_i = U_i^{-1} Q a``
    and ``w_j = U_j^{-1} Q b``, where ``Q`` holds columns i, j of ``W^{-1}`` (so both
    stay decorrelated from every other output); ``a`` and ``b`` solve the 2x2
    generalised eigenproblem ``G_i a = lambda G_j a`` with ``G_n = Q^H U_n^{-1} Q``, the
    larger eigenvalue going to ``i`` (which maximises ``|det W|``), scaled to
    ``a^H G_i a = w_i^H U_i w_i = 1``. Pairs (n, n + 1) cycle over the sources, so each
    row moves twice per call when there are more than two.

    ``U_n^{-1}`` is applied through the Cholesky factor ``U_n = L L^H``:
    ``G_n = Z^H Z`` with ``Z = L^{-1} Q``, and ``w_i = L^{-H} Z a``. ``U_n`` is often
    ill-conditioned (see :data:`ilrma_cli.engine.observation.LOADING`); its inverse by cofactors was then wrong in
    every digit and the update raised the loss, while the factor stays accurate and
    ``G_n`` positive definite.
    """
    low = linalg.cholesky(cov)  # (n_freq, n_src, n_ch, n_ch)
    n_sources = demix.shape[1]
    pairs = [(0, 1)] if n_sources == 2 else [(n, (n + 1) % n_sources) for n in range(n_sources)]
    for i, j in pairs:
        basis = np.stack([steering_column(demix, i), steering_column(demix, j)], axis=-1)
        z_i = linalg.solve_lower(low[:, i], basis)  # (n_freq, n_ch, 2)
        z_j = linalg.solve_lower(low[:, j], basis)
        g_i, g_j = _gram(z_i), _gram(z_j)
        a, b = _gevp_pair(g_i, g_j)
        a, b = _unit_quadratic(a, g_i), _unit_quadratic(b, g_j)
        w_i = linalg.solve_lower(low[:, i], linalg.matmul(z_i, a[..., None]), adjoint=True)[..., 0]
        w_j = linalg.solve_lower(low[:, j], linalg.matmul(z_j, b[..., None]), adjoint=True)[..., 0]
        ok = np.isfinite(w_i).all(axis=-1) & np.isfinite(w_j).all(axis=-1)
        demix[ok, i, :] = w_i[ok].conj()
        demix[ok, j, :] = w_j[ok].conj()


DemixUpdate = Callable[[np.ndarray, np.ndarray], None]

UPDATES: dict[str, DemixUpdate] = {"ip": update_ip, "ip2": update_ip2, "iss": update_iss}
