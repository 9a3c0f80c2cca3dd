"""The compiled backend: per-frequency sweeps of Gaussian ILRMA and of IVA (numba, :mod:`.kernels`).

One iteration of the reference loop (:mod:`ilrma_cli.engine.reference`) with the
Gaussian NMF source model is a single pass over the frequencies; at each frequency ``f`` it

1. forms the model variances ``r_n = basis[n, f] @ activation[n]`` and their
   inverses (``(n_frames,)`` vectors that stay in the L1 cache);
2. accumulates the weighted covariances ``U_n = mean_t x x^H / r_n`` from the
   outer-product features and loads their diagonal (:mod:`ilrma_cli.engine.observation`);
3. updates the demixing matrix of ``f`` with IP, ISS or IP2 (the same rules as
   :mod:`ilrma_cli.engine.spatial`, written per frequency);
4. forms the output powers ``|y_n|^2`` of the new demixing matrix and, with the
   same ``r_n``, updates ``basis[n, f]`` by the Itakura-Saito MM rule;
5. adds this frequency's share to the sums of the activation update, which is
   finished once every frequency has been seen.

So the features are read once per iteration and no ``(n_sources, n_freq,
n_frames)`` array exists: numpy needs about twenty full passes over such arrays
per iteration, which is where its time goes. The order of the updates is that of
Kitamura et al. (TASLP 2016): the basis update of iteration ``i + 1`` runs in the
sweep of iteration ``i``, right after the demixing update it depends on. Power
normalisation is applied after the sweep; every update is scale-equivariant, so
deferring it changes nothing but rounding.

Layouts: ``feats`` ``(n_freq, m*m, n_frames)`` float64 (see
:mod:`ilrma_cli.engine.observation`), ``demix`` ``(n_freq, n_src, m)`` complex128,
``basis`` ``(n_src, n_freq, n_basis)``, ``activation`` ``(n_src, n_basis, n_frames)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ilrma_cli.engine.kernels import entry, inline
from ilrma_cli.engine.observation import FLOOR, LOADING, Observation
from ilrma_cli.engine.reference import log_det_sum, normalise
from ilrma_cli.engine.source_models import GaussNMF, SourceModel
from ilrma_cli.engine.threads import chunk_bounds, run_chunks
from ilrma_cli.engine.types import Callback, loss_wanted

# Demixing rule applied inside the sweep; NO_COV skips steps 2-3.
NO_COV, RULE_IP, RULE_ISS, RULE_IP2 = 0, 1, 2, 3
# The per-frequency forms of the rules of ilrma_cli.engine.spatial (tests check they agree).
KERNEL_RULES = {"ip": RULE_IP, "iss": RULE_ISS, "ip2": RULE_IP2}


@inline
def _reciprocal(x):  # pragma: no cover - compiled
    """``1 / x`` for ``x >= 1e-12`` (well inside the float32 range after clipping), to ~1e-14.

    A float32 division (several times the throughput of a float64 one) refined by
    one Newton step in float64, which squares its relative error (~6e-8).
    """
    y = np.float64(np.float32(1.0) / np.float32(min(x, 1e30)))
    return y * (2.0 - x * y)


@inline
def _inverse_variance(basis, activation, n, f, eps, out):  # pragma: no cover - compiled
    """``out[t] = 1 / max(basis[n, f] @ activation[n, :, t], eps)``."""
    n_basis, n_frames = activation.shape[1], activation.shape[2]
    if n_basis == 1:
        w = basis[n, f, 0]
        for t in range(n_frames):
            out[t] = _reciprocal(max(w * activation[n, 0, t], eps))
        return
    w = basis[n, f, 0]
    for t in range(n_frames):
        out[t] = w * activation[n, 0, t]
    for k in range(1, n_basis - 1):
        w = basis[n, f, k]
        for t in range(n_frames):
            out[t] += w * activation[n, k, t]
    w = basis[n, f, n_basis - 1]
    for t in range(n_frames):
        out[t] = _reciprocal(max(out[t] + w * activation[n, n_basis - 1, t], eps))


@inline
def _covariances(feats, f, inv_var, loading, floor, means, out):  # pragma: no cover - compiled
    """``out[n] = mean_t x x^H inv_var[n, t]`` (m x m, complex) for every source, plus loading.

    The weighted feature means go through ``means`` ``(n_src, m*m)``; with two sources
    both are summed in one pass over each feature row.
    """
    n_src, n_ch = out.shape[0], out.shape[1]
    n_feats, n_frames = feats.shape[1], feats.shape[2]
    scale = 1.0 / n_frames
    for q in range(n_feats):
        if n_src == 2:
            acc_0 = 0.0
            acc_1 = 0.0
            for t in range(n_frames):
                x = feats[f, q, t]
                acc_0 += inv_var[0, t] * x
                acc_1 += inv_var[1, t] * x
            means[0, q] = acc_0 * scale
            means[1, q] = acc_1 * scale
        else:
            for n in range(n_src):
                acc = 0.0
                for t in range(n_frames):
                    acc += inv_var[n, t] * feats[f, q, t]
                means[n, q] = acc * scale
    for n in range(n_src):
        trace = 0.0
        for i in range(n_ch):
            trace += means[n, i]
        load = loading * max(trace / n_ch, floor)
        for i in range(n_ch):
            out[n, i, i] = means[n, i] + load
        q = n_ch
        for i in range(n_ch):
            for j in range(i + 1, n_ch):
                out[n, i, j] = complex(means[n, q], means[n, q + 1])
                out[n, j, i] = complex(means[n, q], -means[n, q + 1])
                q += 2


@inline
def _magnitude(z):  # pragma: no cover - compiled
    """``|Re z| + |Im z|``: a cheap norm for pivoting (no square root)."""
    return abs(z.real) + abs(z.imag)


@inline
def _abs2(z):  # pragma: no cover - compiled
    """``|z|^2`` without the square root of ``abs``."""
    return z.real * z.real + z.imag * z.imag


@inline
def _inverse(z):  # pragma: no cover - compiled
    """``1 / z`` with one real division (numba's complex division is branchy and slow)."""
    return z.conjugate() * (1.0 / _abs2(z))


@inline
def _solve_unit(a, col, out):  # pragma: no cover - compiled
    """``out = a^{-1} e_col``; False when ``a`` is numerically singular (``a`` is only read for 3 x 3,
    overwritten otherwise).

    Cofactors for 3 x 3, Gaussian elimination with partial pivoting otherwise (two
    channels have their own unrolled rules).
    """
    m = a.shape[0]
    scale = 0.0
    for i in range(m):
        for j in range(m):
            scale = max(scale, _magnitude(a[i, j]))
    if m == 3:
        # Column ``col`` of the adjugate: the cross product of the two other rows.
        r1, r2 = (col + 1) % 3, (col + 2) % 3
        for i in range(3):
            i1, i2 = (i + 1) % 3, (i + 2) % 3
            out[i] = a[r1, i1] * a[r2, i2] - a[r1, i2] * a[r2, i1]
        det = a[col, 0] * out[0] + a[col, 1] * out[1] + a[col, 2] * out[2]
        if not _magnitude(det) > 1e-14 * scale * scale * scale:
            return False
        inv_det = _inverse(det)
        for i in range(3):
            out[i] *= inv_det
        return True
    for i in range(m):
        out[i] = 0.0
    out[col] = 1.0
    for c in range(m):
        piv = c
        for r in range(c + 1, m):
            if _magnitude(a[r, c]) > _magnitude(a[piv, c]):
                piv = r
        if not _magnitude(a[piv, c]) > 1e-14 * scale:
            return False
        if piv != c:
            for j in range(m):
                a[c, j], a[piv, j] = a[piv, j], a[c, j]
            out[c], out[piv] = out[piv], out[c]
        inv_pivot = _inverse(a[c, c])
        a[c, c] = inv_pivot  # kept for the back substitution
        for r in range(c + 1, m):
            ratio = a[r, c] * inv_pivot
            for j in range(c + 1, m):
                a[r, j] -= ratio * a[c, j]
            out[r] -= ratio * out[c]
    for c in range(m - 1, -1, -1):
        acc = out[c]
        for j in range(c + 1, m):
            acc -= a[c, j] * out[j]
        out[c] = acc * a[c, c]
    return True


@inline
def _cholesky(a, low):  # pragma: no cover - compiled
    """``low`` lower-triangular with ``low low^H = a`` (Hermitian); False unless ``a`` is positive definite.

    Backward stable however ill-conditioned ``a`` is (see ``demix.LOADING``). The
    diagonal of the factor is real, so ``low[j, j]`` stores ``d + 1j / d``: the
    solves below read ``1 / d`` from it instead of dividing.
    """
    m = a.shape[0]
    for j in range(m):
        pivot = a[j, j].real
        for k in range(j):
            pivot -= _abs2(low[j, k])
        if not pivot > 0.0:
            return False
        diag = np.sqrt(pivot)
        inv_diag = 1.0 / diag
        low[j, j] = complex(diag, inv_diag)  # the diagonal is real: its inverse rides along
        for i in range(j + 1, m):
            entry = a[i, j]
            for k in range(j):
                entry -= low[i, k] * low[j, k].conjugate()
            low[i, j] = entry * inv_diag
        for i in range(j):
            low[i, j] = 0.0
    return True


@inline
def _solve_lower(low, b, out):  # pragma: no cover - compiled
    """``out = low^{-1} b`` (forward substitution; ``low`` from :func:`_cholesky`)."""
    m = low.shape[0]
    for r in range(m):
        acc = b[r]
        for c in range(r):
            acc -= low[r, c] * out[c]
        out[r] = acc * low[r, r].imag


@inline
def _solve_lower_adjoint(low, b, out):  # pragma: no cover - compiled
    """``out = low^{-H} b`` (back substitution; ``low`` from :func:`_cholesky`)."""
    m = low.shape[0]
    for r in range(m - 1, -1, -1):
        acc = b[r]
        for c in range(r + 1, m):
            acc -= low[c, r].conjugate() * out[c]
        out[r] = acc * low[r, r].imag


@inline
def _cholesky_2x2(u):  # pragma: no cover - compiled
    """``(inv_d0, l10, inv_d1)`` of ``L = [[d0, 0], [l10, d1]]``, ``L L^H = u``; ``inv_d1`` is 0
    unless ``u`` is positive definite."""
    pivot = u[0, 0].real
    if not pivot > 0.0:
        return 0.0, 0j, 0.0
    inv_d0 = 1.0 / np.sqrt(pivot)
    l10 = u[1, 0] * inv_d0
    pivot = u[1, 1].real - _abs2(l10)
    if not pivot > 0.0:
        return inv_d0, l10, 0.0
    return inv_d0, l10, 1.0 / np.sqrt(pivot)


@inline
def _all_finite(a, b):  # pragma: no cover - compiled
    """Both complex numbers finite."""
    return (
        np.isfinite(a.real) and np.isfinite(a.imag) and np.isfinite(b.real) and np.isfinite(b.imag)
    )


@inline
def _inverse_2x2(w):  # pragma: no cover - compiled
    """``(ok, q00, q01, q10, q11)``: ``w^{-1}`` of a 2 x 2 matrix; ``ok`` False when it is singular."""
    w00, w01, w10, w11 = w[0, 0], w[0, 1], w[1, 0], w[1, 1]
    scale = max(max(_magnitude(w00), _magnitude(w01)), max(_magnitude(w10), _magnitude(w11)))
    det = w00 * w11 - w01 * w10
    if not _magnitude(det) > 1e-14 * scale * scale:
        return False, 0j, 0j, 0j, 0j
    inv_det = _inverse(det)
    return True, w11 * inv_det, -w01 * inv_det, -w10 * inv_det, w00 * inv_det


@inline
def _update_ip_2x2(demix_f, cov):  # pragma: no cover - compiled
    """:func:`_update_ip` for two channels, in scalars (the same operations, unrolled)."""
    for n in range(2):
        ok, q00, q01, q10, q11 = _inverse_2x2(demix_f)
        if not ok:
            continue
        q0, q1 = (q00, q10) if n == 0 else (q01, q11)
        inv_d0, l10, inv_d1 = _cholesky_2x2(cov[n])
        if inv_d1 == 0.0:
            continue
        z0 = q0 * inv_d0
        z1 = (q1 - l10 * z0) * inv_d1
        x1 = z1 * inv_d1
        x0 = (z0 - l10.conjugate() * x1) * inv_d0
        norm = 1.0 / np.sqrt(_abs2(z0) + _abs2(z1))
        x0, x1 = x0 * norm, x1 * norm
        if _all_finite(x0, x1):
            demix_f[n, 0], demix_f[n, 1] = x0.conjugate(), x1.conjugate()


@inline
def _update_ip2_2x2(demix_f, cov, floor):  # pragma: no cover - compiled
    """:func:`_update_ip2` for two channels (one pair), in scalars (the same operations, unrolled)."""
    ok, q00, q01, q10, q11 = _inverse_2x2(demix_f)
    if not ok:
        return
    a_d0, a_l10, a_d1 = _cholesky_2x2(cov[0])
    b_d0, b_l10, b_d1 = _cholesky_2x2(cov[1])
    if a_d1 == 0.0 or b_d1 == 0.0:
        return
    # Z_n = L_n^{-1} Q, column by column.
    a00 = q00 * a_d0
    a01 = q01 * a_d0
    a10 = (q10 - a_l10 * a00) * a_d1
    a11 = (q11 - a_l10 * a01) * a_d1
    b00 = q00 * b_d0
    b01 = q01 * b_d0
    b10 = (q10 - b_l10 * b00) * b_d1
    b11 = (q11 - b_l10 * b01) * b_d1
    ga00, ga11 = _abs2(a00) + _abs2(a10), _abs2(a01) + _abs2(a11)
    ga01 = a00.conjugate() * a01 + a10.conjugate() * a11
    gb00, gb11 = _abs2(b00) + _abs2(b10), _abs2(b01) + _abs2(b11)
    gb01 = b00.conjugate() * b01 + b10.conjugate() * b11
    e0, e1, f0, f1 = _gevp_pair(ga00, ga11, ga01, gb00, gb11, gb01, floor)
    scale_a = 1.0 / np.sqrt(
        ga00 * _abs2(e0) + ga11 * _abs2(e1) + 2.0 * (e0.conjugate() * ga01 * e1).real
    )
    scale_b = 1.0 / np.sqrt(
        gb00 * _abs2(f0) + gb11 * _abs2(f1) + 2.0 * (f0.conjugate() * gb01 * f1).real
    )
    # w = L^{-H} Z c (back substitution with the 2 x 2 factor).
    y0, y1 = (a00 * e0 + a01 * e1) * scale_a, (a10 * e0 + a11 * e1) * scale_a
    x1 = y1 * a_d1
    x0 = (y0 - a_l10.conjugate() * x1) * a_d0
    y0, y1 = (b00 * f0 + b01 * f1) * scale_b, (b10 * f0 + b11 * f1) * scale_b
    v1 = y1 * b_d1
    v0 = (y0 - b_l10.conjugate() * v1) * b_d0
    if _all_finite(x0, x1) and _all_finite(v0, v1):
        demix_f[0, 0], demix_f[0, 1] = x0.conjugate(), x1.conjugate()
        demix_f[1, 0], demix_f[1, 1] = v0.conjugate(), v1.conjugate()


@inline
def _update_ip_3x3(demix_f, cov, q):  # pragma: no cover - compiled
    """:func:`_update_ip` for three channels, in scalars (the same operations, unrolled).

    ``q`` ``(3,)`` receives column n of ``W^{-1}`` (cofactors, :func:`_solve_unit`).
    """
    for n in range(3):
        if not _solve_unit(demix_f, n, q):
            continue
        q0, q1, q2 = q[0], q[1], q[2]
        u = cov[n]
        pivot = u[0, 0].real
        if not pivot > 0.0:
            continue
        inv_d0 = 1.0 / np.sqrt(pivot)
        l10, l20 = u[1, 0] * inv_d0, u[2, 0] * inv_d0
        pivot = u[1, 1].real - _abs2(l10)
        if not pivot > 0.0:
            continue
        inv_d1 = 1.0 / np.sqrt(pivot)
        l21 = (u[2, 1] - l20 * l10.conjugate()) * inv_d1
        pivot = u[2, 2].real - _abs2(l20) - _abs2(l21)
        if not pivot > 0.0:
            continue
        inv_d2 = 1.0 / np.sqrt(pivot)
        z0 = q0 * inv_d0
        z1 = (q1 - l10 * z0) * inv_d1
        z2 = (q2 - l20 * z0 - l21 * z1) * inv_d2
        x2 = z2 * inv_d2
        x1 = (z1 - l21.conjugate() * x2) * inv_d1
        x0 = (z0 - l10.conjugate() * x1 - l20.conjugate() * x2) * inv_d0
        norm = 1.0 / np.sqrt(_abs2(z0) + _abs2(z1) + _abs2(z2))
        x0, x1, x2 = x0 * norm, x1 * norm, x2 * norm
        if _all_finite(x0, x1) and np.isfinite(x2.real) and np.isfinite(x2.imag):
            demix_f[n, 0], demix_f[n, 1], demix_f[n, 2] = (
                x0.conjugate(),
                x1.conjugate(),
                x2.conjugate(),
            )


@inline
def _update_ip(demix_f, cov, mats, vecs):  # pragma: no cover - compiled
    """IP (Ono 2011) at one frequency: ``w_n = (W U_n)^{-1} e_n = U_n^{-1} q_n``, ``w_n^H U_n w_n = 1``.

    ``q_n`` is column n of ``W^{-1}``; ``U_n^{-1}`` is applied through its Cholesky
    factor ``L``: ``z = L^{-1} q_n``, ``w_n = L^{-H} z / |z|`` (as
    :func:`ilrma_cli.engine.spatial.update_ip`). A row whose systems are singular or
    whose result is not finite keeps its value. Scratch: ``mats`` ``(2, m, m)``, ``vecs`` ``(3, m)``.
    """
    n_src, n_ch = demix_f.shape
    if n_ch == 2:
        _update_ip_2x2(demix_f, cov)
        return
    if n_ch == 3:
        _update_ip_3x3(demix_f, cov, vecs[0])
        return
    a, low = mats[0], mats[1]
    q, z, x = vecs[0], vecs[1], vecs[2]
    for n in range(n_src):
        a[:, :] = demix_f
        if not _solve_unit(a, n, q) or not _cholesky(cov[n], low):
            continue
        _solve_lower(low, q, z)
        _solve_lower_adjoint(low, z, x)
        norm2 = 0.0
        for i in range(n_ch):
            norm2 += _abs2(z[i])
        scale = 1.0 / np.sqrt(norm2)
        ok = True
        for i in range(n_ch):
            ok = ok and np.isfinite(x[i].real) and np.isfinite(x[i].imag)
        if ok and np.isfinite(scale):
            for i in range(n_ch):
                demix_f[n, i] = x[i].conjugate() * scale


@inline
def _update_iss(demix_f, cov, floor, row, u_w, v):  # pragma: no cover - compiled
    """ISS (Scheibler & Ono 2020) at one frequency; see :func:`ilrma_cli.engine.spatial.update_iss`."""
    n_src, n_ch = demix_f.shape
    for k in range(n_src):
        for i in range(n_ch):
            row[i] = demix_f[k, i]
        for n in range(n_src):
            for i in range(n_ch):
                acc = 0j
                for j in range(n_ch):
                    acc += cov[n, i, j] * row[j].conjugate()
                u_w[i] = acc
            quad = 0.0
            cross = 0j
            for i in range(n_ch):
                quad += (row[i] * u_w[i]).real
                cross += demix_f[n, i] * u_w[i]
            if n == k:
                v[n] = 1.0 - 1.0 / np.sqrt(quad) if quad > floor else 0.0
            else:
                v[n] = cross * (1.0 / max(quad, floor))
        for n in range(n_src):
            for i in range(n_ch):
                demix_f[n, i] -= v[n] * row[i]


@inline
def _gevp_pair(a00, a11, a01, b00, b11, b01, floor):  # pragma: no cover - compiled
    """Generalised eigenvectors ``(e, f)`` of 2 x 2 Hermitian ``G_a e = lambda G_b e``.

    The matrices come as entries (``a00``, ``a11`` real, ``a01`` complex); ``e`` belongs
    to the larger eigenvalue, ``f`` is built ``G_b``-orthogonal to it (which also
    covers a double root). Both are returned unscaled as ``(e0, e1, f0, f1)``.
    """
    # Unit trace: the eigenvectors do not change and the floors mean the same at any scale.
    ta, tb = 1.0 / (a00 + a11), 1.0 / (b00 + b11)
    a00, a11, a01 = a00 * ta, a11 * ta, a01 * ta
    b00, b11, b01 = b00 * tb, b11 * tb, b01 * tb
    det_a = a00 * a11 - _abs2(a01)
    det_b = b00 * b11 - _abs2(b01)
    mid = a00 * b11 + a11 * b00 - 2.0 * (a01 * b01.conjugate()).real
    disc = np.sqrt(max(mid * mid - 4.0 * det_a * det_b, 0.0))
    lam = (mid + disc) / (2.0 * max(det_b, floor))
    # Null vector of G_a - lam G_b from its longer row (the accurate one).
    m00, m11, m01 = a00 - lam * b00, a11 - lam * b11, a01 - lam * b01
    if abs(m00) >= abs(m11):
        e0, e1 = m01, complex(-m00, 0.0)
        norm = abs(m00) + abs(m01)
    else:
        e0, e1 = complex(m11, 0.0), -m01.conjugate()
        norm = abs(m11) + abs(m01)
    if not norm > 1e-12 * max(a00, a11):
        e0, e1 = 1.0 + 0j, 0j
    b_e0 = b00 * e0 + b01 * e1
    b_e1 = b01.conjugate() * e0 + b11 * e1
    return e0, e1, -b_e1.conjugate(), b_e0.conjugate()


@inline
def _gram(z):  # pragma: no cover - compiled
    """Entries ``(g00, g11, g01)`` of ``z^H z`` for ``z`` ``(m, 2)``."""
    g00, g11, g01 = 0.0, 0.0, 0j
    for i in range(z.shape[0]):
        g00 += _abs2(z[i, 0])
        g11 += _abs2(z[i, 1])
        g01 += z[i, 0].conjugate() * z[i, 1]
    return g00, g11, g01


@inline
def _update_ip2(demix_f, cov, floor, mats, vecs, pair):  # pragma: no cover - compiled
    """IP2 (Ono 2012) at one frequency; as :func:`ilrma_cli.engine.spatial.update_ip2`.

    For each pair (i, j) (one pair for two sources, else (n, n + 1) cycling),
    ``w_i = U_i^{-1} Q a`` and ``w_j = U_j^{-1} Q b`` with ``Q`` columns i, j of
    ``W^{-1}``, ``a``, ``b`` the generalised eigenvectors of ``G_i e = lambda G_j e``,
    ``G_n = Z_n^H Z_n``, ``Z_n = L_n^{-1} Q`` (``L_n`` the Cholesky factor of ``U_n``),
    scaled to ``a^H G_i a = 1``. Scratch: ``mats`` ``(n_src + 1, m, m)``, ``vecs``
    ``(3, m)``, ``pair`` ``(2, m, 2)``.
    """
    n_src, n_ch = demix_f.shape
    if n_ch == 2:
        _update_ip2_2x2(demix_f, cov, floor)
        return
    for n in range(n_src):
        if not _cholesky(cov[n], mats[n]):
            mats[n, 0, 0] = complex(np.nan, np.nan)  # makes this source's pairs non-finite
    a, col, out = mats[n_src], vecs[0], vecs[1]
    n_pairs = 1 if n_src == 2 else n_src
    for p in range(n_pairs):
        src = (p, (p + 1) % n_src)
        solved = True
        for k in range(2):
            a[:, :] = demix_f
            solved = solved and _solve_unit(a, src[k], col)
            for side in range(2):
                _solve_lower(mats[src[side]], col, out)
                for i in range(n_ch):
                    pair[side, i, k] = out[i]
        if not solved:
            continue
        g_i = _gram(pair[0])
        g_j = _gram(pair[1])
        e0, e1, f0, f1 = _gevp_pair(g_i[0], g_i[1], g_i[2], g_j[0], g_j[1], g_j[2], floor)
        ok = True
        for side in range(2):
            g00, g11, g01 = g_i if side == 0 else g_j
            c0, c1 = (e0, e1) if side == 0 else (f0, f1)
            quad = g00 * _abs2(c0) + g11 * _abs2(c1) + 2.0 * (c0.conjugate() * g01 * c1).real
            scale = 1.0 / np.sqrt(quad)
            for i in range(n_ch):
                col[i] = (pair[side, i, 0] * c0 + pair[side, i, 1] * c1) * scale
            _solve_lower_adjoint(mats[src[side]], col, out)
            for i in range(n_ch):
                a[side, i] = out[i]  # the new rows, conjugated below
                ok = ok and np.isfinite(out[i].real) and np.isfinite(out[i].imag)
        if ok:
            for side in range(2):
                for i in range(n_ch):
                    demix_f[src[side], i] = a[side, i].conjugate()


@inline
def _update_demix(rule, demix_f, cov_f, floor, mats, vecs, pair):  # pragma: no cover - compiled
    """Apply the in-sweep rule to one frequency (scratch: see :func:`_workspace`)."""
    if rule == RULE_IP:
        _update_ip(demix_f, cov_f, mats, vecs)
    elif rule == RULE_ISS:
        _update_iss(demix_f, cov_f, floor, vecs[0], vecs[1], vecs[2])
    else:
        _update_ip2(demix_f, cov_f, floor, mats, vecs, pair)


@inline
def _workspace(n_src, n_ch):  # pragma: no cover - compiled
    """Scratch of the per-frequency rules: ``mats`` ``(n_src + 2, m, m)``, ``vecs`` ``(3, max(m, n_src))``, ``pair`` ``(2, m, 2)``."""
    mats = np.empty((n_src + 2, n_ch, n_ch), dtype=np.complex128)
    vecs = np.empty((3, max(n_ch, n_src)), dtype=np.complex128)
    pair = np.empty((2, n_ch, 2), dtype=np.complex128)
    return mats, vecs, pair


@inline
def _sum_log(values):  # pragma: no cover - compiled
    """``sum(log(values))`` of positive values with one logarithm per 8 values.

    ``log(a) + log(b) = log(ab)``, and a logarithm costs far more than a product.
    The values here are inverse variances, at most ``1 / eps``, so a product of 8
    stays in range unless a variance exceeds ~1e37; such a group takes 8 logarithms.
    """
    total = 0.0
    n = values.shape[0]
    for lo in range(0, n, 8):
        product = 1.0
        for t in range(lo, min(lo + 8, n)):
            product *= values[t]
        if product > 0.0 and product < np.inf:
            total += np.log(product)
        else:
            for t in range(lo, min(lo + 8, n)):
                total += np.log(values[t])
    return total


@inline
def _update_nmf(
    basis, activation, n, f, power, inv_var, ratio, eps, act_num, act_den
):  # pragma: no cover - compiled
    """The Itakura-Saito MM updates of source ``n`` at frequency ``f`` (Kitamura et al., TASLP
    2016): ``basis[n, f]`` by eq. (28) from the output powers ``power`` ``(n_frames,)`` and the
    inverse variances ``inv_var[n]`` before it, then this frequency's share of eq. (29), with
    the new basis, added into ``act_num`` and ``act_den``; ``ratio`` is scratch ``(n_frames,)``.
    """
    n_basis, n_frames = activation.shape[1], activation.shape[2]
    # basis *= sqrt(sum_t |y|^2 r^-2 h_t / sum_t r^-1 h_t), eq. (28)
    for k in range(n_basis):
        num = 0.0
        den = 0.0
        for t in range(n_frames):
            weighted = inv_var[n, t] * activation[n, k, t]
            num += power[t] * inv_var[n, t] * weighted
            den += weighted
        basis[n, f, k] = max(basis[n, f, k] * np.sqrt(num / max(den, eps)), eps)
    # This frequency's share of eq. (29) with the new basis.
    _inverse_variance(basis, activation, n, f, eps, ratio)
    for k in range(n_basis):
        b = basis[n, f, k]
        for t in range(n_frames):
            act_den[n, k, t] += b * ratio[t]
            act_num[n, k, t] += b * power[t] * ratio[t] * ratio[t]


@inline
def _output_power(feats, f, demix_row, out):  # pragma: no cover - compiled
    """``out[t] = |demix_row @ x_ft|^2`` from the features; returns ``sum_t out[t]``.

    Clipped at zero: the quadratic form cancels when an output nearly vanishes, and
    rounding can then make it slightly negative. The clip and the sum ride on the
    last pass (the pair (m - 2, m - 1)).
    """
    n_ch = demix_row.shape[0]
    n_frames = feats.shape[2]
    c = _abs2(demix_row[0])
    for t in range(n_frames):
        out[t] = c * feats[f, 0, t]
    for i in range(1, n_ch):
        c = _abs2(demix_row[i])
        for t in range(n_frames):
            out[t] += c * feats[f, i, t]
    q = n_ch
    total = 0.0
    for i in range(n_ch):
        for j in range(i + 1, n_ch):
            cross = demix_row[i] * demix_row[j].conjugate()
            c_re = 2.0 * cross.real
            c_im = -2.0 * cross.imag
            if q + 2 < feats.shape[1]:
                for t in range(n_frames):
                    out[t] += c_re * feats[f, q, t] + c_im * feats[f, q + 1, t]
            else:
                for t in range(n_frames):
                    value = max(out[t] + c_re * feats[f, q, t] + c_im * feats[f, q + 1, t], 0.0)
                    out[t] = value
                    total += value
            q += 2
    return total


@entry
def sweep(
    feats,
    demix,
    basis,
    activation,
    act_num,
    act_den,
    power_sum,
    rule,
    update_basis,
    want_loss,
    eps,
    loading,
    floor,
    f_lo,
    f_hi,
):  # pragma: no cover - compiled
    """One pass over the frequencies ``f_lo <= f < f_hi`` (module docstring); returns
    their share of ``sum(|y|^2 / r + log r)``.

    ``rule`` is NO_COV or one of ``KERNEL_RULES`` (``demix`` updated in place). With ``update_basis``
    the basis is updated in place and the activation update's numerator and
    denominator are added into ``act_num``, ``act_den`` ``(n_src, n_basis,
    n_frames)``. Unless ``power_sum`` is empty, the output powers (after the
    demixing update) are summed into it per source ``(n_src,)``, for the power
    normalisation. The returned loss part uses these powers and the variances
    before the basis update (0 unless ``want_loss``). Calls on disjoint frequency
    ranges with their own ``act_num``, ``act_den`` and ``power_sum`` may run at once
    (:mod:`ilrma_cli.engine.threads`).
    """
    n_frames = feats.shape[2]
    n_src, n_ch = demix.shape[1], demix.shape[2]
    inv_var = np.empty((n_src, n_frames))
    power = np.empty(n_frames)
    ratio = np.empty(n_frames)
    mats, vecs, pair = _workspace(n_src, n_ch)
    cov_f = np.empty((n_src, n_ch, n_ch), dtype=np.complex128)
    means = np.empty((n_src, n_ch * n_ch))
    want_sum = power_sum.shape[0] > 0
    loss = 0.0
    for f in range(f_lo, f_hi):
        for n in range(n_src):
            _inverse_variance(basis, activation, n, f, eps, inv_var[n])
        if rule != NO_COV:
            _covariances(feats, f, inv_var, loading, floor, means, cov_f)
            _update_demix(rule, demix[f], cov_f, floor, mats, vecs, pair)
        if not (update_basis or want_loss or want_sum):
            continue
        for n in range(n_src):
            total = _output_power(feats, f, demix[f, n], power)
            if want_sum:
                power_sum[n] += total
            if want_loss:
                for t in range(n_frames):
                    loss += power[t] * inv_var[n, t]
                loss -= _sum_log(inv_var[n])
            if not update_basis:
                continue
            _update_nmf(basis, activation, n, f, power, inv_var, ratio, eps, act_num, act_den)
    return loss


@entry
def iva_sweep(
    feats, demix, inv_var, power_sum, rule, loading, floor, f_lo, f_hi
):  # pragma: no cover
    """One pass of IVA (:class:`ilrma_cli.engine.source_models.SphericalIVA`) over the
    frequencies ``f_lo <= f < f_hi``.

    ``inv_var`` ``(n_src, n_frames)`` holds the inverse shared variances
    ``1 / r_nt``; ``rule`` is as in :func:`sweep`. Afterwards, ``power_sum``
    ``(n_src, n_frames)`` receives ``sum_f |y_nft|^2`` over these frequencies of the
    (updated) demixing matrices, from which the next variances follow.
    """
    n_frames = feats.shape[2]
    n_src, n_ch = demix.shape[1], demix.shape[2]
    power = np.empty(n_frames)
    mats, vecs, pair = _workspace(n_src, n_ch)
    cov_f = np.empty((n_src, n_ch, n_ch), dtype=np.complex128)
    means = np.empty((n_src, n_ch * n_ch))
    power_sum[:] = 0.0
    for f in range(f_lo, f_hi):
        if rule != NO_COV:
            _covariances(feats, f, inv_var, loading, floor, means, cov_f)
            _update_demix(rule, demix[f], cov_f, floor, mats, vecs, pair)
        for n in range(n_src):
            _output_power(feats, f, demix[f, n], power)
            for t in range(n_frames):
                power_sum[n, t] += power[t]


def warm_up() -> None:
    """Compile (or load from the cache) both sweeps for the argument types the engine uses."""
    n_src, n_freq, n_frames, n_basis = 2, 3, 4, 2
    feats = np.ones((n_freq, n_src * n_src, n_frames))
    demix = np.tile(np.eye(n_src, dtype=np.complex128), (n_freq, 1, 1))
    basis = np.ones((n_src, n_freq, n_basis))
    activation = np.ones((n_src, n_basis, n_frames))
    act_num, act_den = np.zeros_like(activation), np.zeros_like(activation)
    args = (np.zeros(n_src), RULE_IP, True, True, 1e-12, 1e-14, 1e-12, 0, n_freq)
    sweep(feats, demix, basis, activation, act_num, act_den, *args)
    power = np.zeros((n_src, n_frames))
    iva_sweep(feats, demix, np.ones((n_src, n_frames)), power, RULE_IP, 1e-14, 1e-12, 0, n_freq)


def iterate(
    observation: Observation,
    demix: np.ndarray,
    model: SourceModel,
    rule: str,
    n_iter: int,
    *,
    normalize: bool,
    record_loss: bool,
    eps: float,
    callback: Callback | None = None,
) -> tuple[list[float], int]:
    """:func:`ilrma_cli.engine.reference.iterate` for the Gaussian NMF model, one sweep an iteration.

    ``model`` must be a :class:`GaussNMF`; the sweeps read the observation's features
    ``(n_freq, m*m, n_frames)`` (:func:`run_sweeps` does the rest).
    """
    feats = observation.feats

    def one_sweep(*args: object) -> float:
        return float(sweep(feats, *args))

    return run_sweeps(
        one_sweep,
        demix,
        model,
        rule,
        n_iter,
        (feats.shape[0], feats.shape[2]),
        normalize=normalize,
        record_loss=record_loss,
        eps=eps,
        callback=callback,
    )


def run_sweeps(
    one_sweep: Callable[..., float],
    demix: np.ndarray,
    model: SourceModel,
    rule: str,
    n_iter: int,
    shape: tuple[int, int],
    *,
    normalize: bool,
    record_loss: bool,
    eps: float,
    callback: Callback | None = None,
    between: tuple[int, int] | None = None,
    rescaled: Callable[[np.ndarray], None] | None = None,
) -> tuple[list[float], int]:
    """The iterations around a sweep: ``one_sweep(demix, basis, activation, act_num, act_den,
    power_sum, rule, update_basis, want_loss, eps, loading, floor, f_lo, f_hi)`` as
    :func:`sweep` after its observation argument; ``shape`` is ``(n_freq, n_frames)``.
    ``between`` ``(R, code)``: ``rule`` on iterations 1, R + 1, 2R + 1, ..., the sweep's rule
    ``code`` on the others (:func:`ilrma_cli.engine.taps_compiled.iterate`); ``rescaled(gain)``
    after each iteration's normalisation (``gain`` ones without it).

    ``model`` must be a :class:`GaussNMF`. A first sweep
    does the NMF update of iteration 1, so the updates run in the paper's order (NMF,
    then demixing, then normalisation). The loss is the reference's, from the sweep's
    sum ``sum(|y|^2 / R + log R)`` taken before normalising by the gains ``g``:
    ``part - n_freq n_frames sum log g - 2 n_frames sum_f log|det W_f|`` (``W`` the first
    ``n_sources`` columns of an extended ``demix``). Each sweep runs over the frequency
    chunks of :mod:`ilrma_cli.engine.threads`; the chunks' sums ``(n_chunks, n_src,
    n_basis, n_frames)`` are added in chunk order. Without ``record_loss`` only the last
    iteration's loss is returned, and computed besides for a callback every tenth
    iteration (:func:`ilrma_cli.engine.types.loss_wanted`).
    """
    if not isinstance(model, GaussNMF):
        raise TypeError(
            f"the compiled sweeps run the Gaussian NMF model, not {type(model).__name__}"
        )
    n_freq, n_frames = shape
    n_src = demix.shape[1]
    code = KERNEL_RULES[rule]
    bounds = chunk_bounds(n_freq)
    act_num = np.empty((len(bounds), *model.activation.shape))
    act_den = np.empty_like(act_num)
    power_sum = np.zeros((len(bounds), n_src if normalize else 0))

    def sweep_once(rule_code: int, update_basis: bool, want_loss: bool) -> float:
        act_num.fill(0.0)
        act_den.fill(0.0)
        power_sum.fill(0.0)

        def chunk(c: int, lo: int, hi: int) -> float:
            flags = (rule_code, update_basis, want_loss, eps, LOADING, FLOOR, lo, hi)
            return one_sweep(demix, model.basis, model.activation, act_num[c], act_den[c],
                             power_sum[c], *flags)  # fmt: skip

        part = run_chunks(chunk, bounds)
        if update_basis:
            model.update_activation(act_num.sum(axis=0), act_den.sum(axis=0), eps)
        return part

    def loss(part: float, gain: np.ndarray) -> float:
        return (
            part
            - n_freq * n_frames * float(np.sum(np.log(gain)))
            - 2.0 * n_frames * log_det_sum(demix[..., :n_src])
        )

    part = sweep_once(NO_COV, n_iter > 0, record_loss)
    losses = [loss(part, np.ones(n_src))] if record_loss else []
    n_done = 0
    for it in range(1, n_iter + 1):
        want_loss = loss_wanted(record_loss, callback, it, n_iter)
        rule_code = code if between is None or (it - 1) % between[0] == 0 else between[1]
        part = sweep_once(rule_code, it < n_iter, want_loss)
        gain = np.ones(n_src)
        if normalize:
            gain = normalise(demix, model, power_sum.sum(axis=0) / (n_freq * n_frames), eps)
        if rescaled is not None:
            rescaled(gain)
        n_done = it
        value = float("nan")
        if want_loss:
            value = loss(part, gain)
        if record_loss or it == n_iter:
            losses.append(value)
        if callback is not None and callback(it, value):
            break
    return losses, n_done


def iterate_iva(feats: np.ndarray, demix: np.ndarray, rule: str, n_iter: int, eps: float) -> None:
    """``n_iter`` IVA iterations in place on ``demix``: the reference loop with
    :class:`ilrma_cli.engine.source_models.SphericalIVA`, without normalisation or loss."""

    def one_sweep(*args: object) -> None:
        iva_sweep(feats, *args)

    run_iva_sweeps(one_sweep, demix, (feats.shape[0], feats.shape[2]), rule, n_iter, eps)


def run_iva_sweeps(
    one_sweep: Callable[..., None],
    demix: np.ndarray,
    shape: tuple[int, int],
    rule: str,
    n_iter: int,
    eps: float,
) -> None:
    """The IVA iterations around ``one_sweep(demix, inv_var, power_sum, rule, loading, floor,
    f_lo, f_hi)`` (:func:`iva_sweep` after its observation); ``shape`` is ``(n_freq, n_frames)``.

    The chunks' powers ``(n_chunks, n_src, n_frames)`` are added in chunk order.
    """
    n_freq, n_frames = shape
    n_src = demix.shape[1]
    bounds = chunk_bounds(n_freq)
    power_sum = np.empty((len(bounds), n_src, n_frames))  # sum_f |y_nft|^2 per chunk
    inv_var = np.ones((n_src, n_frames))

    def sweep_once(rule_code: int) -> None:
        def chunk(c: int, lo: int, hi: int) -> float:
            one_sweep(demix, inv_var, power_sum[c], rule_code, LOADING, FLOOR, lo, hi)
            return 0.0

        run_chunks(chunk, bounds)

    sweep_once(NO_COV)
    for _ in range(n_iter):
        np.divide(1.0, np.maximum(power_sum.sum(axis=0) / n_freq, eps), out=inv_var)
        sweep_once(KERNEL_RULES[rule])
