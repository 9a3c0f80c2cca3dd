"""Compiled iterations of the full-rank (FastMNMF2) model (numba).

The same updates as :mod:`ilrma_cli.engine.fullrank` (tested against it from the
same state), reorganised into two passes over the frequencies per iteration,
reading the observation only through its outer-product features ``feats``
``(n_freq, m*m, n_frames)`` (:mod:`ilrma_cli.engine.observation`), so no
``(n_mics, n_freq, n_frames)`` array is ever formed:

1. :func:`weights_pass` sums the numerator and denominator of the spatial-weight
   update (they need every frequency with the new activation);
2. :func:`diagonaliser_pass` updates the rows of ``Q_f`` by iterative projection,
   applies this frequency's share of the normalisation ``phi_f``, adds the loss
   of the updated model, then, block by block of frequencies, does the NMF basis
   update of the *next* iteration (at ``f`` it needs only ``Q_f``, ``w_f``, the
   activation and the weights, all final by then) and adds the block's share of
   the next activation update.

:func:`nmf_pass` is the NMF step of the second pass alone, on given powers: the
refit of the start's NMF (:func:`fit_nmf_compiled`). :func:`wiener_pass` forms the
source images through the multichannel Wiener filter (:func:`wiener_images_compiled`).

The weight normalisation ``mu_n`` runs between the passes and ``nu_nk`` after
the second one; every update is equivariant under these rescalings, so their
place changes nothing but rounding. Both passes release the GIL and run over the
fixed frequency chunks of :mod:`ilrma_cli.engine.threads`, each chunk summing into
its own buffers, added in chunk order: the same bits for any thread count. Every
helper is inlined into the two compiled passes and lives in this file (numba's cache
does not see changes made to helpers in other files).
"""

from __future__ import annotations

import numpy as np

from ilrma_cli.engine.fullrank import EPS, FullRankModel
from ilrma_cli.engine.kernels import entry, inline
from ilrma_cli.engine.observation import LOADING, freq_blocks
from ilrma_cli.engine.threads import chunk_bounds, run_chunks
from ilrma_cli.engine.types import Callback, loss_wanted

# Frequencies per block: the NMF sums of a block are matrix products (BLAS), and the
# block's variances and ratios (3 n_src x block x n_frames floats) stay in the cache.
# Longer blocks make faster products (128 frequencies: the iterations on 70 frames 7 %
# faster than 32), so a block has up to 128 frequencies and 32 x 280 bins, never fewer
# than 32 frequencies: from 280 frames on, the 32 it always had.
BLOCK_MIN, BLOCK_MAX, BLOCK_BINS = 32, 128, 32 * 280


@inline
def _block_size(n_frames):  # pragma: no cover - compiled
    """Frequencies per block for ``n_frames`` frames (:data:`BLOCK_BINS`)."""
    return min(BLOCK_MAX, max(BLOCK_MIN, BLOCK_BINS // max(n_frames, 1)))


@inline
def _block_variances(basis, activation, lo, hi, eps, lam):  # pragma: no cover - compiled
    """``lam[n, b] = max(basis[n, lo + b] @ activation[n], eps)`` for ``b < hi - lo`` (BLAS products)."""
    n_src = basis.shape[0]
    n_frames = activation.shape[2]
    for n in range(n_src):
        product = np.dot(basis[n, lo:hi], activation[n])
        for b in range(hi - lo):
            for t in range(n_frames):
                lam[n, b, t] = max(product[b, t], eps)


@inline
def _inverse_model_power(weights, lam, eps, inv):  # pragma: no cover - compiled
    """``inv[m, t] = 1 / max(sum_n g_nm lam[n, t], eps)``."""
    n_src, n_mics = weights.shape
    n_frames = lam.shape[1]
    for m in range(n_mics):
        g = weights[0, m]
        for t in range(n_frames):
            inv[m, t] = g * lam[0, t]
        for n in range(1, n_src):
            g = weights[n, m]
            for t in range(n_frames):
                inv[m, t] += g * lam[n, t]
        for t in range(n_frames):
            inv[m, t] = 1.0 / max(inv[m, t], eps)


@inline
def _projected(feats, f, q_f, proj):  # pragma: no cover - compiled
    """``proj[m, t] = |q_fm^H x_ft|^2`` from the features (clipped at zero)."""
    n_mics = q_f.shape[0]
    n_frames = feats.shape[2]
    for m in range(n_mics):
        for t in range(n_frames):
            proj[m, t] = 0.0
        for i in range(n_mics):
            c = q_f[m, i].real ** 2 + q_f[m, i].imag ** 2
            for t in range(n_frames):
                proj[m, t] += c * feats[f, i, t]
        p = n_mics
        for i in range(n_mics):
            for j in range(i + 1, n_mics):
                cross = q_f[m, i] * q_f[m, j].conjugate()
                c_re = 2.0 * cross.real
                c_im = -2.0 * cross.imag
                for t in range(n_frames):
                    proj[m, t] += c_re * feats[f, p, t] + c_im * feats[f, p + 1, t]
                p += 2
        for t in range(n_frames):
            proj[m, t] = max(proj[m, t], 0.0)


@inline
def _weighted_covariance(feats, f, inv_m, loading, floor, means, cov):  # pragma: no cover
    """``cov = mean_t x_ft x_ft^H inv_m[t]`` (Hermitian, loaded by ``loading`` trace / m)."""
    n_mics = cov.shape[0]
    n_feats, n_frames = feats.shape[1], feats.shape[2]
    for p in range(n_feats):
        total = 0.0
        for t in range(n_frames):
            total += feats[f, p, t] * inv_m[t]
        means[p] = total / n_frames
    trace = 0.0
    for i in range(n_mics):
        trace += means[i]
    load = loading * max(trace / n_mics, floor)
    for i in range(n_mics):
        cov[i, i] = means[i] + load
    p = n_mics
    for i in range(n_mics):
        for j in range(i + 1, n_mics):
            cov[i, j] = means[p] + 1j * means[p + 1]
            cov[j, i] = means[p] - 1j * means[p + 1]
            p += 2


@inline
def _solve(a, b, work):  # pragma: no cover - compiled
    """``b <- a^{-1} b`` by Gaussian elimination with partial pivoting (``a`` copied to ``work``)."""
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            work[i, j] = a[i, j]
    for col in range(n):
        pivot = col
        best = abs(work[col, col])
        for r in range(col + 1, n):
            if abs(work[r, col]) > best:
                best = abs(work[r, col])
                pivot = r
        if pivot != col:
            for j in range(n):
                work[col, j], work[pivot, j] = work[pivot, j], work[col, j]
            b[col], b[pivot] = b[pivot], b[col]
        inv = 1.0 / work[col, col]
        for r in range(col + 1, n):
            factor = work[r, col] * inv
            for j in range(col, n):
                work[r, j] -= factor * work[col, j]
            b[r] -= factor * b[col]
    for i in range(n - 1, -1, -1):
        total = b[i]
        for j in range(i + 1, n):
            total -= work[i, j] * b[j]
        b[i] = total / work[i, i]


@inline
def _cholesky(a, low):  # pragma: no cover - compiled
    """Lower factor ``a = low low^H`` of a Hermitian positive definite ``a`` (NaN if it is not)."""
    n = a.shape[0]
    for j in range(n):
        diag = a[j, j].real
        for k in range(j):
            diag -= low[j, k].real ** 2 + low[j, k].imag ** 2
        root = np.sqrt(diag) if diag > 0.0 else np.nan
        low[j, j] = root
        for i in range(j + 1, n):
            total = a[i, j]
            for k in range(j):
                total -= low[i, k] * low[j, k].conjugate()
            low[i, j] = total / root
        for i in range(j):
            low[i, j] = 0.0


@inline
def _update_rows(
    feats, f, q_f, inv, loading, floor, means, cov, low, work, col
):  # pragma: no cover
    """Iterative projection of every row of ``Q_f`` in turn (see ``fullrank.update_diagonaliser``).

    ``q_m = V_m^{-1} a`` with ``a`` column m of ``Q_f^{-1}`` equals ``(Q_f V_m)^{-1} e_m``; through
    ``V_m = L L^H``: ``z = L^{-1} a``, ``q_m = L^{-H} z / |z|`` (so ``q_m^H V_m q_m = 1``).
    """
    n_mics = q_f.shape[0]
    for m in range(n_mics):
        _weighted_covariance(feats, f, inv[m], loading, floor, means, cov)
        for i in range(n_mics):
            col[i] = 0.0
        col[m] = 1.0
        _solve(q_f, col, work)  # col = Q_f^{-1} e_m
        _cholesky(cov, low)
        for i in range(n_mics):  # z = L^{-1} col
            total = col[i]
            for k in range(i):
                total -= low[i, k] * col[k]
            col[i] = total / low[i, i]
        norm = 0.0
        for i in range(n_mics):
            norm += col[i].real ** 2 + col[i].imag ** 2
        norm = np.sqrt(norm)
        for i in range(n_mics - 1, -1, -1):  # L^{-H} z
            total = col[i]
            for k in range(i + 1, n_mics):
                total -= low[k, i].conjugate() * col[k]
            col[i] = total / low[i, i].real
        finite = norm > 0.0
        for i in range(n_mics):
            finite = finite and np.isfinite(col[i].real) and np.isfinite(col[i].imag)
        if finite:
            for i in range(n_mics):
                q_f[m, i] = (col[i] / norm).conjugate()


@entry
def weights_pass(
    feats, diag, weights, basis, activation, num, den, eps, f_lo, f_hi
):  # pragma: no cover - compiled
    """Add ``sum_t lambda_nft xt_mft / yt_mft^2`` into ``num`` and ``sum_t lambda / yt`` into
    ``den`` ``(n_src, n_w, n_mics)``, over the frequencies ``[f_lo, f_hi)``: at ``[n, f, m]``
    for per-frequency weights (``n_w = n_freq``), summed over ``f`` at ``[n, 0, m]`` for
    shared ones (``n_w = 1``; ``weights`` has the same layout)."""
    n_frames = feats.shape[2]
    n_src, n_w, n_mics = weights.shape
    block = _block_size(n_frames)
    lam = np.empty((n_src, block, n_frames))
    inv = np.empty((n_mics, n_frames))
    proj = np.empty((n_mics, n_frames))
    for lo in range(f_lo, f_hi, block):
        hi = min(lo + block, f_hi)
        _block_variances(basis, activation, lo, hi, eps, lam)
        for b in range(hi - lo):
            w = lo + b if n_w > 1 else 0
            _projected(feats, lo + b, diag[lo + b], proj)
            _inverse_model_power(weights[:, w], lam[:, b], eps, inv)
            for m in range(n_mics):
                for t in range(n_frames):
                    proj[m, t] *= inv[m, t] * inv[m, t]
            for n in range(n_src):
                for m in range(n_mics):
                    s_num = 0.0
                    s_den = 0.0
                    for t in range(n_frames):
                        s_num += lam[n, b, t] * proj[m, t]
                        s_den += lam[n, b, t] * inv[m, t]
                    num[n, w, m] += s_num
                    den[n, w, m] += s_den


@entry
def diagonaliser_pass(
    feats,
    diag,
    weights,
    basis,
    activation,
    act_num,
    act_den,
    update_q,
    update_w,
    want_loss,
    eps,
    f_lo,
    f_hi,
):  # pragma: no cover - compiled
    """Rows of ``Q_f`` and ``phi_f`` (if ``update_q``), loss part, next basis update (module
    docstring), over the frequencies ``[f_lo, f_hi)``.

    Returns ``sum_mft (xt / yt + log yt)`` of the model after the ``Q`` update (0 unless
    ``want_loss``). With ``update_w`` the basis is updated in place and the activation
    update's numerator and denominator are added into ``act_num``, ``act_den``
    ``(n_src, n_basis, n_frames)``. Frequencies go in blocks (:func:`_block_size`), so that
    the sums over the NMF bases are matrix products (BLAS).
    """
    n_feats, n_frames = feats.shape[1], feats.shape[2]
    n_src, n_w, n_mics = weights.shape
    n_basis = basis.shape[2]
    block = _block_size(n_frames)
    lam = np.empty((n_src, block, n_frames))
    ratio = np.empty((2, n_src, block, n_frames))
    proj = np.empty((block, n_mics, n_frames))
    inv = np.empty((n_mics, n_frames))
    scaled = np.empty((n_mics, n_frames))
    means = np.empty(n_feats)
    cov = np.empty((n_mics, n_mics), dtype=np.complex128)
    low = np.empty((n_mics, n_mics), dtype=np.complex128)
    work = np.empty((n_mics, n_mics), dtype=np.complex128)
    col = np.empty(n_mics, dtype=np.complex128)
    loss = 0.0
    for lo in range(f_lo, f_hi, block):
        hi = min(lo + block, f_hi)
        _block_variances(basis, activation, lo, hi, eps, lam)
        for b in range(hi - lo):
            f = lo + b
            q_f = diag[f]
            g_f = weights[:, f if n_w > 1 else 0]
            if update_q:
                _inverse_model_power(g_f, lam[:, b], eps, inv)
                _update_rows(feats, f, q_f, inv, LOADING, EPS, means, cov, low, work, col)
                phi = 0.0
                for i in range(n_mics):
                    for j in range(n_mics):
                        phi += q_f[i, j].real ** 2 + q_f[i, j].imag ** 2
                phi /= n_mics
                scale = 1.0 / np.sqrt(phi)
                for i in range(n_mics):
                    for j in range(n_mics):
                        q_f[i, j] *= scale
                for n in range(n_src):
                    for k in range(n_basis):
                        basis[n, f, k] /= phi
                    for t in range(n_frames):
                        lam[n, b, t] = max(lam[n, b, t] / phi, eps)
            if not (update_w or want_loss):
                continue
            _projected(feats, f, q_f, proj[b])
            _inverse_model_power(g_f, lam[:, b], eps, inv)
            if want_loss:
                for m in range(n_mics):
                    for t in range(n_frames):
                        loss += proj[b, m, t] * inv[m, t] - np.log(inv[m, t])
            if update_w:
                _source_ratios(g_f, proj[b], inv, scaled, ratio, b)
        if not update_w:
            continue
        # w_nkf *= sqrt(sum_t h A / sum_t h B), A = sum_m g xt / yt^2, B = sum_m g / yt
        _update_block_basis(basis, activation, ratio, lo, hi, eps)
        # This block's share of the activation update, with the new basis.
        _block_variances(basis, activation, lo, hi, eps, lam)
        for b in range(hi - lo):
            g_f = weights[:, lo + b if n_w > 1 else 0]
            _inverse_model_power(g_f, lam[:, b], eps, inv)
            _source_ratios(g_f, proj[b], inv, scaled, ratio, b)
        _add_activation_sums(basis, ratio, lo, hi, act_num, act_den)
    return loss


@inline
def _update_block_basis(basis, activation, ratio, lo, hi, eps):  # pragma: no cover - compiled
    """``w_nkf *= sqrt(sum_t h_nkt ratio[0, n, f] / sum_t h_nkt ratio[1, n, f])`` for ``f`` in
    ``[lo, hi)`` (floored at ``eps``), ``ratio`` ``(2, n_src, block, n_frames)`` from ``f = lo``."""
    n_src, _, n_basis = basis.shape
    for n in range(n_src):
        num = np.dot(ratio[0, n, : hi - lo], activation[n].T)
        den = np.dot(ratio[1, n, : hi - lo], activation[n].T)
        for b in range(hi - lo):
            for k in range(n_basis):
                gain = np.sqrt(num[b, k] / max(den[b, k], eps))
                basis[n, lo + b, k] = max(basis[n, lo + b, k] * gain, eps)


@inline
def _add_activation_sums(basis, ratio, lo, hi, act_num, act_den):  # pragma: no cover - compiled
    """``act_num[n] += w_n[lo:hi]^T ratio[0, n]``, ``act_den[n] += w_n[lo:hi]^T ratio[1, n]``."""
    for n in range(basis.shape[0]):
        act_num[n] += np.dot(basis[n, lo:hi].T, ratio[0, n, : hi - lo])
        act_den[n] += np.dot(basis[n, lo:hi].T, ratio[1, n, : hi - lo])


@entry
def nmf_pass(power, basis, activation, act_num, act_den, eps, f_lo, f_hi):  # pragma: no cover
    """IS-NMF of ``power[:, n] ~ basis[n] @ activation[n]`` over ``[f_lo, f_hi)``: the basis
    update, then this range's share of the activation update's numerator and denominator
    (added into ``act_num``, ``act_den`` ``(n, n_basis, n_frames)``); ``power`` is
    ``(n_freq, n, n_frames)``, the layout the features give (no copy).

    The NMF step of :func:`diagonaliser_pass` with one mic per source (identity weights)
    and the projections given: ``ratio = (P / V^2, 1 / V)``, ``V = max(w h, eps)``.
    """
    _, n_src, n_frames = power.shape
    block = _block_size(n_frames)
    lam = np.empty((n_src, block, n_frames))
    ratio = np.empty((2, n_src, block, n_frames))
    for lo in range(f_lo, f_hi, block):
        hi = min(lo + block, f_hi)
        for step in range(2):  # the ratios with the old basis, then with the new one
            _block_variances(basis, activation, lo, hi, eps, lam)
            for n in range(n_src):
                for b in range(hi - lo):
                    for t in range(n_frames):
                        inv = 1.0 / lam[n, b, t]
                        ratio[1, n, b, t] = inv
                        ratio[0, n, b, t] = power[lo + b, n, t] * inv * inv
            if step == 0:
                _update_block_basis(basis, activation, ratio, lo, hi, eps)
        _add_activation_sums(basis, ratio, lo, hi, act_num, act_den)


@entry
def wiener_pass(
    obs, diag, mixing, weights, basis, activation, ref_mic, eps, f0, out
):  # pragma: no cover - compiled
    """Multichannel Wiener images of the frequencies ``f0, f0 + 1, ...`` that ``obs``
    ``(n_mics, n_block, n_frames)`` holds, into ``out`` ``(n_src, n_out, n_block, n_frames)``:
    ``c_nft = A_f diag(g_nf lambda_nft / yt_ft) Q_f x_ft`` (``A_f = Q_f^{-1}``, ``mixing``)
    at mic ``ref_mic`` (``n_out`` 1), or at every mic for ``ref_mic < 0`` (``n_out = n_mics``);
    ``weights`` ``(n_src, n_w, n_mics)`` as in :func:`weights_pass`.
    """
    n_mics, n_block, n_frames = obs.shape
    n_src, n_w = weights.shape[0], weights.shape[1]
    n_out = out.shape[1]
    block = min(_block_size(n_frames), n_block)
    lam = np.empty((n_src, block, n_frames))
    inv = np.empty((n_mics, n_frames))
    scaled = np.empty((n_mics, n_frames), dtype=np.complex128)  # Q_f x_ft / yt_ft
    for lo in range(0, n_block, block):
        hi = min(lo + block, n_block)
        _block_variances(basis, activation, f0 + lo, f0 + hi, eps, lam)
        for b in range(hi - lo):
            f = f0 + lo + b
            g_f = weights[:, f if n_w > 1 else 0]
            _inverse_model_power(g_f, lam[:, b], eps, inv)
            for m in range(n_mics):
                for t in range(n_frames):
                    scaled[m, t] = 0.0
                for j in range(n_mics):
                    q = diag[f, m, j]
                    for t in range(n_frames):
                        scaled[m, t] += q * obs[j, lo + b, t]
                for t in range(n_frames):
                    scaled[m, t] *= inv[m, t]
            for n in range(n_src):
                for o in range(n_out):
                    mic = ref_mic if ref_mic >= 0 else o
                    for t in range(n_frames):
                        out[n, o, lo + b, t] = 0.0
                    for m in range(n_mics):
                        c = mixing[f, mic, m] * g_f[n, m]
                        for t in range(n_frames):
                            out[n, o, lo + b, t] += c * scaled[m, t]
                    for t in range(n_frames):
                        out[n, o, lo + b, t] *= lam[n, b, t]


@inline
def _source_ratios(weights, proj, inv, scaled, ratio, b):  # pragma: no cover - compiled
    """``ratio[0, n, b] = sum_m g_nm xt_m / yt_m^2``, ``ratio[1, n, b] = sum_m g_nm / yt_m``.

    ``scaled`` ``(n_mics, n_frames)`` is scratch for ``xt / yt^2``.
    """
    n_src, n_mics = weights.shape
    n_frames = proj.shape[1]
    for m in range(n_mics):
        for t in range(n_frames):
            scaled[m, t] = proj[m, t] * inv[m, t] * inv[m, t]
    for n in range(n_src):
        g = weights[n, 0]
        for t in range(n_frames):
            ratio[0, n, b, t] = g * scaled[0, t]
            ratio[1, n, b, t] = g * inv[0, t]
        for m in range(1, n_mics):
            g = weights[n, m]
            for t in range(n_frames):
                ratio[0, n, b, t] += g * scaled[m, t]
                ratio[1, n, b, t] += g * inv[m, t]


def weights_layout(weights: np.ndarray) -> np.ndarray:
    """The passes' layout ``(n_src, n_w, n_mics)`` of the spatial weights: a view, ``n_w = 1``
    for weights shared by every frequency ``(n_src, n_mics)``, ``n_freq`` for per-frequency ones."""
    return weights[:, None, :] if weights.ndim == 2 else weights


def iterate_compiled(
    feats: np.ndarray,
    model: FullRankModel,
    n_iter: int,
    callback: Callback | None = None,
    record_loss: bool = True,
    eps: float = EPS,
) -> tuple[list[float], int]:
    """:func:`ilrma_cli.engine.fullrank.iterate` on the features; ``(losses, n_done)``.

    ``feats`` ``(n_freq, m*m, n_frames)`` float64 are those of the observation the
    model applies to; ``model`` is updated in place. ``losses`` holds the start and
    one value per iteration with ``record_loss``, else only the last iteration's (the
    callback gets it every tenth iteration too, NaN otherwise:
    :func:`ilrma_cli.engine.types.loss_wanted`), which spares most passes their log terms.
    A callback that stops the run leaves the basis one update ahead of the rest (that
    update only lowers the loss); a run to ``n_iter`` ends in the reference's state.
    """
    n_freq, _, n_frames = feats.shape
    diag, weights = model.diagonaliser, weights_layout(model.spatial_weights)
    basis, activation = model.basis, model.activation
    bounds = chunk_bounds(n_freq)
    act_num = np.zeros((len(bounds), *activation.shape))
    act_den = np.zeros_like(act_num)
    g_num = np.zeros((len(bounds), *weights.shape))
    g_den = np.zeros_like(g_num)

    def diagonaliser_step(update_q: bool, update_w: bool, want_loss: bool) -> float:
        act_num.fill(0.0)
        act_den.fill(0.0)
        flags = (update_q, update_w, want_loss, eps)

        def chunk(c: int, lo: int, hi: int) -> float:
            return diagonaliser_pass(feats, diag, weights, basis, activation,
                                     act_num[c], act_den[c], *flags, lo, hi)  # fmt: skip

        part = run_chunks(chunk, bounds)
        if not want_loss:
            return float("nan")
        _, logdet = np.linalg.slogdet(diag)
        return float(part - 2.0 * n_frames * np.sum(logdet))

    def weights_step() -> None:
        g_num.fill(0.0)
        g_den.fill(0.0)

        def chunk(c: int, lo: int, hi: int) -> float:
            weights_pass(feats, diag, weights, basis, activation, g_num[c], g_den[c], eps, lo, hi)
            return 0.0

        run_chunks(chunk, bounds)
        weights[:] *= np.sqrt(g_num.sum(axis=0) / np.maximum(g_den.sum(axis=0), eps))

    start = diagonaliser_step(False, n_iter > 0, record_loss)
    losses = [start] if record_loss else []
    n_done = 0
    for it in range(1, n_iter + 1):
        update_activation(activation, act_num, act_den, eps)
        weights_step()
        np.maximum(weights, eps, out=weights)
        mu = weights.sum(axis=2)  # (n_src, n_w): per source, and frequency if per frequency
        weights /= mu[:, :, None]
        basis *= mu[:, :, None]
        want_loss = loss_wanted(record_loss, callback, it, n_iter)
        value = diagonaliser_step(True, it < n_iter, want_loss)
        nu = basis.sum(axis=1)
        basis /= nu[:, None, :]
        activation *= nu[:, :, None]
        n_done = it
        if record_loss or it == n_iter:
            losses.append(value)
        if callback is not None and callback(it, value):
            break
    return losses, n_done


def update_activation(
    activation: np.ndarray, act_num: np.ndarray, act_den: np.ndarray, eps: float
) -> None:
    """``h *= sqrt(num / den)`` floored at ``eps``, from the chunks' sums ``act_num``,
    ``act_den`` ``(n_chunks, *activation.shape)`` added in chunk order (the passes' share)."""
    activation *= np.sqrt(act_num.sum(axis=0) / np.maximum(act_den.sum(axis=0), eps))
    np.maximum(activation, eps, out=activation)


def fit_nmf_compiled(
    power: np.ndarray, basis: np.ndarray, activation: np.ndarray, n_iter: int, eps: float = EPS
) -> None:
    """:func:`ilrma_cli.engine.fullrank_refine.fit_nmf` with :func:`nmf_pass`, in place.

    ``power`` ``(n_freq, n, n_frames)`` (the reference's axes 0 and 1 swapped), ``basis``
    ``(n, n_freq, n_basis)`` and ``activation`` ``(n, n_basis, n_frames)``: float64,
    C-contiguous.
    """
    bounds = chunk_bounds(power.shape[0])
    act_num = np.zeros((len(bounds), *activation.shape))
    act_den = np.zeros_like(act_num)

    def chunk(c: int, lo: int, hi: int) -> float:
        nmf_pass(power, basis, activation, act_num[c], act_den[c], eps, lo, hi)
        return 0.0

    for _ in range(n_iter):
        act_num.fill(0.0)
        act_den.fill(0.0)
        run_chunks(chunk, bounds)
        update_activation(activation, act_num, act_den, eps)


def wiener_images_compiled(
    obs: np.ndarray, model: FullRankModel, ref_mic: int | None = 0, eps: float = EPS
) -> np.ndarray:
    """:func:`ilrma_cli.engine.fullrank.wiener_images` with :func:`wiener_pass`: the source
    images at ``ref_mic`` ``(n_src, n_freq, n_frames)``, or at every mic ``(n_src, n_mics,
    n_freq, n_frames)`` when it is None, in ``obs``'s precision (complex64 or complex128).

    ``obs`` ``(n_mics, n_freq, n_frames)`` of any layout is read one block of frequencies at
    a time (a complex128 copy of the block, as small as the reference's temporaries), the
    blocks in the threads of :mod:`ilrma_cli.engine.threads` (each writes its own part).
    """
    n_mics, n_freq, n_frames = obs.shape
    n_src = model.spatial_weights.shape[0]
    n_out = n_mics if ref_mic is None else 1
    out = np.empty((n_src, n_out, n_freq, n_frames), dtype=np.result_type(obs.dtype, np.complex64))
    mixing = np.linalg.inv(model.diagonaliser)
    basis = np.ascontiguousarray(model.basis, dtype=np.float64)
    activation = np.ascontiguousarray(model.activation, dtype=np.float64)
    weights = weights_layout(np.ascontiguousarray(model.spatial_weights, dtype=np.float64))
    diag = np.ascontiguousarray(model.diagonaliser, dtype=np.complex128)
    at = -1 if ref_mic is None else ref_mic
    blocks = freq_blocks(n_freq, n_frames * max(n_src * n_out, n_mics))

    def block(c: int, lo: int, hi: int) -> float:
        images = np.empty((n_src, n_out, hi - lo, n_frames), dtype=np.complex128)
        block_obs = np.ascontiguousarray(obs[:, lo:hi], dtype=np.complex128)
        wiener_pass(block_obs, diag, mixing, weights, basis, activation, at, eps, lo, images)
        out[:, :, lo:hi] = images
        return 0.0

    run_chunks(block, [(s.start, min(s.stop, n_freq)) for s in blocks])
    return out[:, 0] if ref_mic is not None else out


def warm_up() -> None:
    """Compile (or load from the cache) every entry for the argument types the engine uses."""
    n_mics, n_freq, n_frames, n_basis = 2, 3, 4, 2
    feats = np.ones((n_freq, n_mics * n_mics, n_frames))
    feats[:, n_mics:] = 0.0
    model = FullRankModel(
        np.tile(np.eye(n_mics, dtype=np.complex128), (n_freq, 1, 1)),
        np.eye(n_mics) + 0.1,
        np.ones((n_mics, n_freq, n_basis)),
        np.ones((n_mics, n_basis, n_frames)),
    )
    iterate_compiled(feats, model, 1)
    wiener_images_compiled(np.ones((n_mics, n_freq, n_frames), dtype=np.complex128), model)
    fit_nmf_compiled(np.ones((n_freq, n_mics, n_frames)), model.basis, model.activation, 1)
