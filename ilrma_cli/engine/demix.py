"""Demixing-matrix updates of ILRMA (the spatial model).

Layouts: demixing matrices ``demix`` ``(n_freq, n_sources, n_channels)`` whose
row n is ``w_n^H``; weighted covariances ``cov`` ``(n_freq, n_sources, n_ch, n_ch)``
with ``cov[f, n] = U_n = mean_t x x^H / r_n`` (see :func:`weighted_covariances`);
inverse model variances ``inv_var`` ``(n_sources, n_freq, n_frames)``.

Every rule minimises, with the variances fixed, the spatial part of the
negative log-likelihood ``sum_n w_n^H U_n w_n - 2 log|det W|`` (per frequency),
so each is a majorisation-minimisation step. The rules only need the
covariances, never the signals: each function updates ``demix`` in place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ilrma_cli.engine import small
from ilrma_cli.engine.features import to_hermitian, weighted_feature_means

# Relative diagonal loading of the weighted covariances: keeps them invertible
# for silent or identical channels without changing well-posed problems.
LOADING = 1e-9
# Floor of powers and quadratic forms; the engine works on unit-mean-power data.
FLOOR = 1e-12


def weighted_covariances(feats: np.ndarray, inv_var: np.ndarray) -> np.ndarray:
    """``U[f, n] = mean_t x_ft x_ft^H / r_nft`` ``(n_freq, n_sources, n_ch, n_ch)``, loaded.

    ``feats`` ``(n_freq, n_ch**2, n_frames)`` are the outer-product features of
    :mod:`ilrma_cli.engine.features`; one real matmul serves every source.
    """
    n_ch = int(round(np.sqrt(feats.shape[1])))
    cov = to_hermitian(weighted_feature_means(feats, inv_var), n_ch)
    trace = np.einsum("fnii->fn", cov).real / n_ch
    load = LOADING * np.maximum(trace, FLOOR)
    cov[..., np.arange(n_ch), np.arange(n_ch)] += load[..., None]
    return cov


def _normalise(w: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Scale ``w`` ``(n_freq, n_ch)`` so that ``w^H cov w = 1``."""
    quad = np.einsum("fi,fij,fj->f", w.conj(), cov, w).real
    with np.errstate(invalid="ignore"):
        return w / np.sqrt(np.maximum(quad, FLOOR))[:, None]


def update_ip(demix: np.ndarray, cov: np.ndarray) -> None:
    """Iterative projection (Ono, WASPAA 2011): ``w_n = (W U_n)^{-1} e_n``, then ``w_n^H U_n w_n = 1``."""
    for n in range(demix.shape[1]):
        w = _normalise(small.inv_column(small.matmul(demix, cov[:, n]), n), cov[:, n])
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


def _gevp_pair(g_a: np.ndarray, g_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form 2x2 Hermitian generalised eigenvectors of ``g_a e = lambda g_b e``.

    Returns ``(e_max, e_min)`` ``(n_freq, 2)`` for the larger and smaller eigenvalue;
    ``e_min`` is built ``g_b``-orthogonal to ``e_max``, which also covers a double root.
    """
    det_b = (g_b[:, 0, 0] * g_b[:, 1, 1]).real - np.abs(g_b[:, 0, 1]) ** 2
    det_a = (g_a[:, 0, 0] * g_a[:, 1, 1]).real - np.abs(g_a[:, 0, 1]) ** 2
    mid = (g_a[:, 0, 0] * g_b[:, 1, 1] + g_a[:, 1, 1] * g_b[:, 0, 0]).real - 2 * (
        g_a[:, 0, 1] * g_b[:, 0, 1].conj()
    ).real
    disc = np.sqrt(np.maximum(mid**2 - 4 * det_a * det_b, 0.0))
    lam = (mid + disc) / (2 * np.maximum(det_b, FLOOR))
    m = g_a - lam[:, None, None] * g_b
    from_row0 = np.stack([m[:, 0, 1], -m[:, 0, 0]], axis=-1)
    from_row1 = np.stack([m[:, 1, 1], -m[:, 1, 0]], axis=-1)
    norm0 = np.linalg.norm(from_row0, axis=-1)
    norm1 = np.linalg.norm(from_row1, axis=-1)
    e_max = np.where((norm0 >= norm1)[:, None], from_row0, from_row1)
    degenerate = np.maximum(norm0, norm1) <= 1e-12 * np.abs(g_a).max(axis=(1, 2))
    e_max[degenerate] = (1.0, 0.0)
    b_e = np.einsum("fij,fj->fi", g_b, e_max)
    e_min = np.stack([-b_e[:, 1].conj(), b_e[:, 0].conj()], axis=-1)
    return e_max, e_min


def update_ip2(demix: np.ndarray, cov: np.ndarray) -> None:
    """Pairwise iterative projection (Ono, APSIPA 2012; pairs cycle for more sources).

    For the pair (i, j), with the other rows fixed, ``w_i = U_i^{-1} Q a`` and
    ``w_j = U_j^{-1} Q b`` where ``Q`` holds columns i, j of ``W^{-1}``; ``a`` and
    ``b`` solve the 2x2 generalised eigenproblem ``G_i a = lambda G_j a`` with
    ``G_n = Q^H U_n^{-1} Q``; the larger eigenvalue goes to ``i``.
    """
    inv_cov = small.inv(cov)
    n_sources = demix.shape[1]
    pairs = [(0, 1)] if n_sources == 2 else [(n, (n + 1) % n_sources) for n in range(n_sources)]
    for i, j in pairs:
        basis = small.inv(demix)[:, :, [i, j]]  # Q: (n_freq, n_ch, 2)
        basis_h = basis.conj().transpose(0, 2, 1)
        h_i = small.matmul(inv_cov[:, i], basis)
        h_j = small.matmul(inv_cov[:, j], basis)
        g_i = small.matmul(basis_h, h_i)
        g_j = small.matmul(basis_h, h_j)
        a, b = _gevp_pair(g_i, g_j)
        w_i = _normalise(np.einsum("fmk,fk->fm", h_i, a), cov[:, i])
        w_j = _normalise(np.einsum("fmk,fk->fm", h_j, b), cov[:, j])
        ok = np.isfinite(w_i).all(axis=-1) & np.isfinite(w_j).all(axis=-1)
        demix[ok, i, :] = w_i[ok].conj()
        demix[ok, j, :] = w_j[ok].conj()


DemixUpdate = Callable[[np.ndarray, np.ndarray], None]

UPDATES: dict[str, DemixUpdate] = {"ip": update_ip, "iss": update_iss, "ip2": update_ip2}
