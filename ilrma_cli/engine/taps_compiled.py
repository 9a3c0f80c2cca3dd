"""The compiled backend with taps: joint dereverberation and separation in one sweep (numba).

One iteration of the reference loop on the stacked-taps observation
(:mod:`ilrma_cli.engine.taps`: ``y = P z``, ``z_t = [x_t; x_{t-D}; ...; x_{t-D-L+1}]``,
``P = [W, -G]`` ``(n_sources, K)``) with the Gaussian NMF model, as a single pass over the
frequencies in the order of :func:`ilrma_cli.engine.compiled.sweep`: at each ``f`` the
inverse model variances, the rule on the extended rows, then the output powers
``|p_n^H z|^2`` and the Itakura-Saito NMF steps (Kitamura et al., TASLP 2016, eqs. 28-29).
IP and IP2 form the extended weighted covariances ``U_n = mean_t z z^H / r_n`` ``(K, K)``
and use ``W^{-1} e_n`` zero-padded (as :func:`ilrma_cli.engine.spatial.steering_column`);
ISS is T-ISS, tap columns first, as :func:`ilrma_cli.engine.taps.update_t_iss`, but with
every inner product taken on the outputs (:func:`_t_iss_on_outputs`): no ``K x K`` matrix,
so its cost grows with ``K`` instead of ``K^2``.

The stack is never formed: :class:`TapsFrames` holds each signal's frames once (the mics
once when they are also the current frame, i.e. without PCA), split into real and
imaginary planes, and row ``k`` of ``z`` is read as one of them delayed by ``shift[k]``
frames (zero before the first frame). So the memory is ``m B 16`` bytes instead of the
reference's ``K B 16``, and every loop over frames is a contiguous, vectorisable one.

Layouts: ``planes`` ``(n_rows, n_freq, 2, n_frames)`` float64 (working scale), ``rows`` and
``shifts`` ``(K,)`` int64 (:meth:`TapsFrames.row_map`), ``demix`` ``(n_freq, n_src, K)``
complex128, ``basis`` ``(n_src, n_freq, n_basis)``, ``activation`` ``(n_src, n_basis, n_frames)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilrma_cli.engine import compiled
from ilrma_cli.engine.compiled import (
    NO_COV,
    RULE_IP,
    RULE_ISS,
    _abs2,
    _cholesky,
    _gevp_pair,
    _gram,
    _inverse_variance,
    _solve_lower,
    _solve_lower_adjoint,
    _solve_unit,
    _sum_log,
    _update_nmf,
)
from ilrma_cli.engine.kernels import entry, inline
from ilrma_cli.engine.observation import FLOOR, LOADING, freq_blocks
from ilrma_cli.engine.source_models import SourceModel
from ilrma_cli.engine.types import Callback

# The rule of the iterations between two joint updates of the filters with ``tap_refresh``
# > 1 (ilrma_cli.engine.taps.taps_rule): IP on the outputs; a code beside compiled.py's.
RULE_IP_OUTPUTS = 4


@dataclass
class TapsFrames:
    """The stacked-taps observation without the stack (module docstring).

    ``planes`` ``(n_rows, n_freq, 2, n_frames)`` float64: rows ``[0, n_channels)`` are the
    current frame's channels, rows ``[past_row, past_row + n_past)`` the mics the filters
    predict from (``past_row`` 0 when they are the same signals).
    """

    planes: np.ndarray
    n_channels: int
    past_row: int
    n_past: int
    taps: int
    delay: int

    @property
    def n_freq(self) -> int:
        return self.planes.shape[1]

    @property
    def width(self) -> int:
        """``K``: the length of the stacked vector."""
        return self.n_channels + self.taps * self.n_past

    def row_map(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, shifts)`` ``(K,)`` int64: ``z_k(t) = planes[rows[k], :, :, t - shifts[k]]``."""
        rows = list(range(self.n_channels))
        shifts = [0] * self.n_channels
        for lag in range(self.taps):
            rows += range(self.past_row, self.past_row + self.n_past)
            shifts += [self.delay + lag] * self.n_past
        return np.array(rows, dtype=np.int64), np.array(shifts, dtype=np.int64)

    def demix_apply(self, demix: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """``scale * P z`` ``(n_sources, n_freq, n_frames)`` complex128 of ``demix`` ``(n_freq, n_sources, K)``."""
        out = np.empty((demix.shape[1], self.n_freq, self.planes.shape[3]), dtype=np.complex128)
        apply(self.planes, *self.row_map(), demix, scale, out)
        return out


def taps_frames(
    current: np.ndarray, past: np.ndarray, taps: int, delay: int
) -> tuple[TapsFrames, float]:
    """``(frames, mean_power)``: :func:`ilrma_cli.engine.taps.taps_observation` without the stack.

    ``current`` ``(n_cur, n_freq, n_frames)`` and ``past`` ``(n_mics, n_freq, n_frames)``
    (any complex dtype; ``past is current`` stores them once) are scaled to unit mean
    power of ``current`` (a silent one keeps its scale, ``mean_power`` 1).
    """
    n_cur, n_freq, n_frames = current.shape
    shared = past is current
    past_row = 0 if shared else n_cur
    sources = [current] if shared else [current, past]
    planes = np.empty((past_row + past.shape[0], n_freq, 2, n_frames))
    total = 0.0
    for freqs in freq_blocks(n_freq, n_frames * planes.shape[0]):
        lo = 0
        for signal in sources:
            x = signal[:, freqs]
            rows = slice(lo, lo + signal.shape[0])
            planes[rows, freqs, 0] = x.real
            planes[rows, freqs, 1] = x.imag
            lo += signal.shape[0]
        for row in range(n_cur):
            head = planes[row, freqs].ravel()  # contiguous: a view
            total += float(np.dot(head, head))
    mean_power = total / (n_cur * n_freq * n_frames)
    if mean_power > 0:
        planes /= np.sqrt(mean_power)
    frames = TapsFrames(planes, n_cur, past_row, past.shape[0], taps, delay)
    return frames, mean_power if mean_power > 0 else 1.0


@inline
def _covariances(planes, f, rows, shifts, inv_var, loading, floor, prod, out):  # pragma: no cover
    """``out[n] = mean_t z z^H inv_var[n, t]`` ``(K, K)`` for every source, loaded as the reference's.

    Each product ``z_a conj(z_b)`` is formed once per frame and weighted for every source
    (two sources fused in one pass; more go through ``prod`` ``(2, n_frames)``).
    """
    n_src, width = out.shape[0], out.shape[1]
    n_frames = planes.shape[3]
    scale = 1.0 / n_frames
    for a in range(width):
        for b in range(a, width):
            # Frames t >= lo of both rows, as slices: the loops index from 0 (no wraparound
            # checks in the way of the vectoriser).
            lo = max(shifts[a], shifts[b])
            count = n_frames - lo
            if count <= 0:
                for n in range(n_src):
                    out[n, a, b] = 0j
                continue
            start_a, start_b = lo - shifts[a], lo - shifts[b]
            re_a = planes[rows[a], f, 0, start_a : start_a + count]
            im_a = planes[rows[a], f, 1, start_a : start_a + count]
            re_b = planes[rows[b], f, 0, start_b : start_b + count]
            im_b = planes[rows[b], f, 1, start_b : start_b + count]
            if n_src == 2:
                w0, w1 = inv_var[0, lo:], inv_var[1, lo:]
                r0, i0, r1, i1 = 0.0, 0.0, 0.0, 0.0
                for t in range(count):
                    pr = re_a[t] * re_b[t] + im_a[t] * im_b[t]
                    pi = im_a[t] * re_b[t] - re_a[t] * im_b[t]
                    r0 += w0[t] * pr
                    i0 += w0[t] * pi
                    r1 += w1[t] * pr
                    i1 += w1[t] * pi
                out[0, a, b] = complex(r0 * scale, i0 * scale)
                out[1, a, b] = complex(r1 * scale, i1 * scale)
                continue
            for t in range(count):
                prod[0, t] = re_a[t] * re_b[t] + im_a[t] * im_b[t]
                prod[1, t] = im_a[t] * re_b[t] - re_a[t] * im_b[t]
            for n in range(n_src):
                w = inv_var[n, lo:]
                acc_r, acc_i = 0.0, 0.0
                for t in range(count):
                    acc_r += w[t] * prod[0, t]
                    acc_i += w[t] * prod[1, t]
                out[n, a, b] = complex(acc_r * scale, acc_i * scale)
    for n in range(n_src):
        trace = 0.0
        for a in range(width):
            trace += out[n, a, a].real
        load = loading * max(trace / width, floor)
        for a in range(width):
            out[n, a, a] = complex(out[n, a, a].real + load, 0.0)
            for b in range(a + 1, width):
                out[n, b, a] = out[n, a, b].conjugate()


@inline
def _outputs(planes, f, rows, shifts, row, y_re, y_im):  # pragma: no cover - compiled
    """``y[t] = row @ z_t`` ``(n_frames,)`` into ``y_re``, ``y_im`` (``row`` ``(K,)`` complex)."""
    n_frames = planes.shape[3]
    for t in range(n_frames):
        y_re[t] = 0.0
        y_im[t] = 0.0
    for k in range(row.shape[0]):
        cr, ci = row[k].real, row[k].imag
        count = n_frames - shifts[k]
        if count <= 0:
            continue
        re, im = planes[rows[k], f, 0, :count], planes[rows[k], f, 1, :count]
        out_re, out_im = y_re[shifts[k] :], y_im[shifts[k] :]
        for t in range(count):
            out_re[t] += cr * re[t] - ci * im[t]
            out_im[t] += cr * im[t] + ci * re[t]


@inline
def _output_power(planes, f, rows, shifts, row, y_re, y_im, out):  # pragma: no cover - compiled
    """``out[t] = |row @ z_t|^2``; returns ``sum_t out[t]``."""
    _outputs(planes, f, rows, shifts, row, y_re, y_im)
    return _power(y_re, y_im, out)


@inline
def _power(y_re, y_im, out):  # pragma: no cover - compiled
    """``out[t] = y_re[t]^2 + y_im[t]^2``; returns ``sum_t out[t]``."""
    total = 0.0
    for t in range(out.shape[0]):
        value = y_re[t] * y_re[t] + y_im[t] * y_im[t]
        out[t] = value
        total += value
    return total


@inline
def _steering(demix_f, n, a, q):  # pragma: no cover - compiled
    """``q = [W^{-1} e_n; 0]`` ``(K,)``, ``W = demix_f[:, :n_src]`` (scratch ``a`` ``(n_src, n_src)``); False if singular."""
    n_src, width = demix_f.shape
    for i in range(n_src):
        for j in range(n_src):
            a[i, j] = demix_f[i, j]
    for i in range(n_src, width):
        q[i] = 0.0
    return _solve_unit(a, n, q[:n_src])


@inline
def _update_ip(demix_f, cov, a, low, q, z, x):  # pragma: no cover - compiled
    """ILRMA-T's IP on the extended rows: ``p_n = U_n^{-1} q_n / sqrt(q_n^H U_n^{-1} q_n)``.

    As :func:`ilrma_cli.engine.spatial.update_ip` with ``q_n`` from :func:`_steering`
    (``z = L^{-1} q_n``, ``p_n = L^{-H} z / |z|``); a row whose systems are singular or
    whose result is not finite keeps its value.
    """
    n_src, width = demix_f.shape
    for n in range(n_src):
        if not _steering(demix_f, n, a, q) or not _cholesky(cov[n], low):
            continue
        _solve_lower(low, q, z)
        _solve_lower_adjoint(low, z, x)
        norm2 = 0.0
        for i in range(width):
            norm2 += _abs2(z[i])
        scale = 1.0 / np.sqrt(norm2)
        ok = np.isfinite(scale)
        for i in range(width):
            ok = ok and np.isfinite(x[i].real) and np.isfinite(x[i].imag)
        if ok:
            for i in range(width):
                demix_f[n, i] = x[i].conjugate() * scale


@inline
def _update_ip2(demix_f, cov, floor, a, mats, col, out, pair, rows):  # pragma: no cover
    """IP2 on the extended rows (:func:`ilrma_cli.engine.spatial.update_ip2` with padded steering columns).

    Scratch: ``mats`` ``(n_src, K, K)`` (Cholesky factors), ``col``, ``out`` ``(K,)``,
    ``pair`` ``(2, K, 2)``, ``rows`` ``(2, K)``.
    """
    n_src, width = demix_f.shape
    for n in range(n_src):
        if not _cholesky(cov[n], mats[n]):
            mats[n, 0, 0] = complex(np.nan, np.nan)  # makes this source's pairs non-finite
    n_pairs = 1 if n_src == 2 else n_src
    for p in range(n_pairs):
        src = (p, (p + 1) % n_src)
        solved = True
        for k in range(2):
            solved = solved and _steering(demix_f, src[k], a, col)
            for side in range(2):
                _solve_lower(mats[src[side]], col, out)
                for i in range(width):
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
            for i in range(width):
                col[i] = (pair[side, i, 0] * c0 + pair[side, i, 1] * c1) * scale
            _solve_lower_adjoint(mats[src[side]], col, out)
            for i in range(width):
                rows[side, i] = out[i]
                ok = ok and np.isfinite(out[i].real) and np.isfinite(out[i].imag)
        if ok:
            for side in range(2):
                for i in range(width):
                    demix_f[src[side], i] = rows[side, i].conjugate()


@inline
def _outputs_and_loads(
    planes, f, rows, shifts, inv_var, loading, floor, demix_f, ys, diag, loads
):  # pragma: no cover - compiled
    """The outputs of every row of ``demix_f`` into ``ys`` ``(n_src, 2, n_frames)``, and
    ``diag[n, c] = mean_t |z_c|^2 / r_n`` ``(n_src, K)`` with ``loads[n]``, the loading
    :func:`_covariances` gives ``U_n`` (from its trace), without forming ``U_n``."""
    for n in range(demix_f.shape[0]):
        _outputs(planes, f, rows, shifts, demix_f[n], ys[n, 0], ys[n, 1])
    n_src, width = diag.shape
    n_frames = planes.shape[3]
    scale = 1.0 / n_frames
    for c in range(width):
        count = n_frames - shifts[c]
        for n in range(n_src):
            diag[n, c] = 0.0
        if count <= 0:
            continue
        re, im = planes[rows[c], f, 0, :count], planes[rows[c], f, 1, :count]
        for n in range(n_src):
            w = inv_var[n, shifts[c] :]
            acc = 0.0
            for t in range(count):
                acc += w[t] * (re[t] * re[t] + im[t] * im[t])
            diag[n, c] = acc * scale
    for n in range(n_src):
        trace = 0.0
        for c in range(width):
            trace += diag[n, c]
        loads[n] = loading * max(trace / width, floor)


@inline
def _loads(planes, f, rows, shifts, inv_var, loading, floor, energy, loads):  # pragma: no cover
    """``loads[n]``, the loading :func:`_covariances` gives ``U_n`` (from its trace
    ``mean_t |z_t|^2 / r_n``), without forming ``U_n``: ``energy`` ``(n_frames,)`` scratch
    receives ``|z_t|^2``, so the cost is ``O((K + n_src) n_frames)``."""
    n_frames = planes.shape[3]
    width = rows.shape[0]
    for t in range(n_frames):
        energy[t] = 0.0
    for c in range(width):
        count = n_frames - shifts[c]
        if count <= 0:
            continue
        re, im = planes[rows[c], f, 0, :count], planes[rows[c], f, 1, :count]
        out = energy[shifts[c] :]
        for t in range(count):
            out[t] += re[t] * re[t] + im[t] * im[t]
    for n in range(inv_var.shape[0]):
        w = inv_var[n]
        acc = 0.0
        for t in range(n_frames):
            acc += w[t] * energy[t]
        loads[n] = loading * max(acc / (n_frames * width), floor)


@inline
def _ip_on_outputs(
    planes, f, rows, shifts, inv_var, loading, floor, demix_f, ys, scale, loads, scratch
):  # pragma: no cover - compiled
    """:func:`ilrma_cli.engine.taps.update_ip_outputs` at one frequency, from the outputs.

    ``ys`` ``(n_src, 2, n_frames)`` holds on entry the outputs of ``demix_f``'s rows divided
    by ``scale`` ``(n_src,)`` (those of the last sweep, before its normalisation: no
    ``O(n_src K n_frames)`` product here). ``V_n = P U_n P^H = mean_t y y^H / r_n + load_n
    P P^H`` ``(n_src, n_src)`` is formed from them (``O(n_src^2 n_frames)``; the loads from
    :func:`_loads`: no ``K x K`` covariance), IP from ``mix = I`` on it (:func:`_update_ip`),
    then ``P <- mix P`` and ``y <- mix y``: on return ``ys`` holds the outputs of the new
    rows. Scratch: ``loads`` ``(n_src,)`` and ``scratch`` from :func:`_outputs_workspace`.
    """
    cov, mix, mats, vecs, old, energy = scratch
    n_src, width = demix_f.shape
    n_frames = planes.shape[3]
    inv_frames = 1.0 / n_frames
    _loads(planes, f, rows, shifts, inv_var, loading, floor, energy, loads)
    for n in range(n_src):
        if scale[n] != 1.0:
            for part in range(2):
                for t in range(n_frames):
                    ys[n, part, t] *= scale[n]
    for i in range(n_src):
        for j in range(i, n_src):
            gram = 0j
            for k in range(width):
                gram += demix_f[i, k] * demix_f[j, k].conjugate()
            yi_re, yi_im, yj_re, yj_im = ys[i, 0], ys[i, 1], ys[j, 0], ys[j, 1]
            for n in range(n_src):
                w = inv_var[n]
                acc_r, acc_i = 0.0, 0.0
                for t in range(n_frames):  # y_i conj(y_j)
                    acc_r += w[t] * (yi_re[t] * yj_re[t] + yi_im[t] * yj_im[t])
                    acc_i += w[t] * (yi_im[t] * yj_re[t] - yi_re[t] * yj_im[t])
                value = complex(acc_r * inv_frames, acc_i * inv_frames) + loads[n] * gram
                if i == j:
                    value = complex(value.real, 0.0)
                cov[n, i, j] = value
                cov[n, j, i] = value.conjugate()
        for j in range(n_src):
            mix[i, j] = 1.0 if i == j else 0.0
    _update_ip(mix, cov, mats[0], mats[1], vecs[0], vecs[1], vecs[2])
    col = vecs[0]
    for k in range(width):  # P <- mix P, a column at a time
        for i in range(n_src):
            acc = 0j
            for j in range(n_src):
                acc += mix[i, j] * demix_f[j, k]
            col[i] = acc
        for i in range(n_src):
            demix_f[i, k] = col[i]
    old[:] = ys
    for i in range(n_src):  # y <- mix y
        y_re, y_im = ys[i, 0], ys[i, 1]
        for t in range(n_frames):
            y_re[t] = 0.0
            y_im[t] = 0.0
        for j in range(n_src):
            cr, ci = mix[i, j].real, mix[i, j].imag
            o_re, o_im = old[j, 0], old[j, 1]
            for t in range(n_frames):
                y_re[t] += cr * o_re[t] - ci * o_im[t]
                y_im[t] += cr * o_im[t] + ci * o_re[t]


@inline
def _t_iss_on_outputs(
    planes, f, rows, shifts, inv_var, loading, floor, demix_f, ys, diag, loads, v, yk
):  # pragma: no cover - compiled
    """T-ISS at one frequency on the outputs themselves, without the ``K x K`` covariances.

    The steps of :func:`ilrma_cli.engine.taps.update_t_iss` (the tap columns, then ISS) on
    ``U_n`` loaded as :func:`_covariances` does, with every inner product formed from the
    signals:
    ``p_n^H U_n e_c = mean_t y_n conj(z_c) / r_n + load_n p_nc`` and
    ``p_n^H U_n p_k = mean_t y_n conj(y_k) / r_n + load_n p_n . conj(p_k)``, so a step costs
    ``O(n_src n_frames)`` and an iteration ``O(n_src K n_frames)`` instead of the
    covariances' ``O(n_src K^2 n_frames)``. The outputs ``y_n = p_n z`` are formed once and
    kept current by each step's rank-1 correction; on return ``ys`` ``(n_src, 2, n_frames)``
    holds them (real, imaginary planes) for the updated rows. Scratch: ``diag`` ``(n_src, K)``,
    ``loads`` ``(n_src,)``, ``v`` ``(n_src,)`` complex, ``yk`` ``(2, n_frames)``.
    """
    n_src, width = demix_f.shape
    n_frames = planes.shape[3]
    scale = 1.0 / n_frames
    _outputs_and_loads(planes, f, rows, shifts, inv_var, loading, floor, demix_f, ys, diag, loads)
    for n in range(n_src):
        for c in range(width):
            diag[n, c] += loads[n]
    # Tap steps (T-ISS): y_n <- y_n - v_n z_c for each tap column c.
    for c in range(n_src, width):
        count = n_frames - shifts[c]
        if count <= 0:
            continue
        s = shifts[c]
        re, im = planes[rows[c], f, 0, :count], planes[rows[c], f, 1, :count]
        for n in range(n_src):
            pivot = diag[n, c]
            if not pivot > floor:
                continue
            w = inv_var[n, s:]
            y_re, y_im = ys[n, 0, s:], ys[n, 1, s:]
            acc_r, acc_i = 0.0, 0.0
            for t in range(count):  # y conj(z)
                acc_r += w[t] * (y_re[t] * re[t] + y_im[t] * im[t])
                acc_i += w[t] * (y_im[t] * re[t] - y_re[t] * im[t])
            cross = complex(acc_r * scale, acc_i * scale) + loads[n] * demix_f[n, c]
            step = cross * (1.0 / pivot)
            demix_f[n, c] -= step
            sr, si = step.real, step.imag
            for t in range(count):
                y_re[t] -= sr * re[t] - si * im[t]
                y_im[t] -= sr * im[t] + si * re[t]
    # Separation steps (ISS) on the extended rows: y_n <- y_n - v_n y_k.
    for k in range(n_src):
        for t in range(n_frames):
            yk[0, t] = ys[k, 0, t]
            yk[1, t] = ys[k, 1, t]
        norm_k = 0.0
        for i in range(width):
            norm_k += _abs2(demix_f[k, i])
        for n in range(n_src):
            w = inv_var[n]
            y_re, y_im = ys[n, 0], ys[n, 1]
            quad, acc_r, acc_i = 0.0, 0.0, 0.0
            for t in range(n_frames):
                quad += w[t] * (yk[0, t] * yk[0, t] + yk[1, t] * yk[1, t])
                acc_r += w[t] * (y_re[t] * yk[0, t] + y_im[t] * yk[1, t])
                acc_i += w[t] * (y_im[t] * yk[0, t] - y_re[t] * yk[1, t])
            quad = quad * scale + loads[n] * norm_k
            if n == k:
                v[n] = 1.0 - 1.0 / np.sqrt(quad) if quad > floor else 0.0
            else:
                inner = 0j
                for i in range(width):
                    inner += demix_f[n, i] * demix_f[k, i].conjugate()
                cross = complex(acc_r * scale, acc_i * scale) + loads[n] * inner
                v[n] = cross * (1.0 / max(quad, floor))
        for n in range(n_src):
            if n != k:  # row k last: the others subtract its old value
                for i in range(width):
                    demix_f[n, i] -= v[n] * demix_f[k, i]
            sr, si = v[n].real, v[n].imag
            y_re, y_im = ys[n, 0], ys[n, 1]
            for t in range(n_frames):
                y_re[t] -= sr * yk[0, t] - si * yk[1, t]
                y_im[t] -= sr * yk[1, t] + si * yk[0, t]
        vk = v[k]
        for i in range(width):
            demix_f[k, i] -= vk * demix_f[k, i]


@inline
def _workspace(n_src, width):  # pragma: no cover - compiled
    """Scratch of the rules: ``a`` ``(n_src, n_src)``, ``mats`` ``(n_src + 1, K, K)``, ``vecs`` ``(3, K)``,
    ``pair`` ``(2, K, 2)``, ``rows`` ``(n_src + 2, K)``."""
    a = np.empty((n_src, n_src), dtype=np.complex128)
    mats = np.empty((n_src + 1, width, width), dtype=np.complex128)
    vecs = np.empty((3, width), dtype=np.complex128)
    pair = np.empty((2, width, 2), dtype=np.complex128)
    rows = np.empty((n_src + 2, width), dtype=np.complex128)
    return a, mats, vecs, pair, rows


@inline
def _t_iss_workspace(n_src, width, n_frames):  # pragma: no cover - compiled
    """Scratch of :func:`_t_iss_on_outputs`: ``ys``, ``diag``, ``loads``, ``v``, ``yk``."""
    ys = np.empty((n_src, 2, n_frames))
    diag = np.empty((n_src, width))
    loads = np.empty(n_src)
    v = np.empty(n_src, dtype=np.complex128)
    yk = np.empty((2, n_frames))
    return ys, diag, loads, v, yk


@inline
def _outputs_workspace(n_src, n_frames):  # pragma: no cover - compiled
    """Scratch of :func:`_ip_on_outputs`: ``cov`` ``(n_src, n_src, n_src)``, ``mix``
    ``(n_src, n_src)``, ``mats`` ``(2, n_src, n_src)``, ``vecs`` ``(3, n_src)`` complex, ``old``
    ``(n_src, 2, n_frames)``, ``energy`` ``(n_frames,)``."""
    cov = np.empty((n_src, n_src, n_src), dtype=np.complex128)
    mix = np.empty((n_src, n_src), dtype=np.complex128)
    mats = np.empty((2, n_src, n_src), dtype=np.complex128)
    vecs = np.empty((3, n_src), dtype=np.complex128)
    old = np.empty((n_src, 2, n_frames))
    energy = np.empty(n_frames)
    return cov, mix, mats, vecs, old, energy


@inline
def _update_demix(rule, demix_f, cov_f, floor, a, mats, vecs, pair, rows):  # pragma: no cover
    """Apply IP or IP2 to one frequency's extended rows (T-ISS needs no covariances:
    :func:`_t_iss_on_outputs`)."""
    if rule == RULE_IP:
        _update_ip(demix_f, cov_f, a, mats[0], vecs[0], vecs[1], vecs[2])
    else:
        _update_ip2(demix_f, cov_f, floor, a, mats, vecs[0], vecs[1], pair, rows)


@entry
def sweep(
    planes,
    rows,
    shifts,
    outputs,
    scale,
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
    """:func:`ilrma_cli.engine.compiled.sweep` on the stacked-taps observation (same arguments after ``scale``).

    ``outputs`` ``(n_freq, n_src, 2, n_frames)`` (or ``(0, ...)``: none kept) receives the
    outputs, before normalisation, of every sweep that forms them (one that updates the NMF
    or wants the loss or the powers) with any rule but T-ISS; :data:`RULE_IP_OUTPUTS` needs
    them and starts from them times ``scale`` ``(n_src,)``, the normalisation since
    (:func:`_ip_on_outputs`).
    """
    n_frames = planes.shape[3]
    n_src, width = demix.shape[1], demix.shape[2]
    inv_var = np.empty((n_src, n_frames))
    power = np.empty(n_frames)
    ratio = np.empty(n_frames)
    y_re = np.empty(n_frames)
    y_im = np.empty(n_frames)
    prod = np.empty((2, n_frames))
    a, mats, vecs, pair, rows_scratch = _workspace(n_src, width)
    ys, diag, loads, v, yk = _t_iss_workspace(n_src, width, n_frames)
    scratch = _outputs_workspace(n_src, n_frames)
    cov_f = np.empty((n_src, width, width), dtype=np.complex128)
    want_sum = power_sum.shape[0] > 0
    keep = outputs.shape[0] > 0
    loss = 0.0
    for f in range(f_lo, f_hi):
        for n in range(n_src):
            _inverse_variance(basis, activation, n, f, eps, inv_var[n])
        if rule == RULE_ISS:
            _t_iss_on_outputs(planes, f, rows, shifts, inv_var, loading, floor, demix[f], ys,
                              diag, loads, v, yk)  # fmt: skip
        elif rule == RULE_IP_OUTPUTS:
            _ip_on_outputs(planes, f, rows, shifts, inv_var, loading, floor, demix[f], outputs[f],
                           scale, loads, scratch)  # fmt: skip
        elif rule != NO_COV:
            _covariances(planes, f, rows, shifts, inv_var, loading, floor, prod, cov_f)
            _update_demix(rule, demix[f], cov_f, floor, a, mats, vecs, pair, rows_scratch)
        if not (update_basis or want_loss or want_sum):
            continue
        for n in range(n_src):
            if rule == RULE_ISS:  # the outputs of the updated rows are at hand
                total = _power(ys[n, 0], ys[n, 1], power)
            elif rule == RULE_IP_OUTPUTS:
                total = _power(outputs[f, n, 0], outputs[f, n, 1], power)
            else:
                out_re, out_im = (outputs[f, n, 0], outputs[f, n, 1]) if keep else (y_re, y_im)
                total = _output_power(planes, f, rows, shifts, demix[f, n], out_re, out_im, power)
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
    planes, rows, shifts, demix, inv_var, power_sum, rule, loading, floor, f_lo, f_hi
):  # pragma: no cover
    """:func:`ilrma_cli.engine.compiled.iva_sweep` on the stacked-taps observation (IVA-T)."""
    n_frames = planes.shape[3]
    n_src, width = demix.shape[1], demix.shape[2]
    power = np.empty(n_frames)
    y_re = np.empty(n_frames)
    y_im = np.empty(n_frames)
    prod = np.empty((2, n_frames))
    a, mats, vecs, pair, rows_scratch = _workspace(n_src, width)
    ys, diag, loads, v, yk = _t_iss_workspace(n_src, width, n_frames)
    cov_f = np.empty((n_src, width, width), dtype=np.complex128)
    power_sum[:] = 0.0
    for f in range(f_lo, f_hi):
        if rule == RULE_ISS:
            _t_iss_on_outputs(planes, f, rows, shifts, inv_var, loading, floor, demix[f], ys,
                              diag, loads, v, yk)  # fmt: skip
        elif rule != NO_COV:
            _covariances(planes, f, rows, shifts, inv_var, loading, floor, prod, cov_f)
            _update_demix(rule, demix[f], cov_f, floor, a, mats, vecs, pair, rows_scratch)
        for n in range(n_src):
            if rule == RULE_ISS:
                _power(ys[n, 0], ys[n, 1], power)
            else:
                _output_power(planes, f, rows, shifts, demix[f, n], y_re, y_im, power)
            for t in range(n_frames):
                power_sum[n, t] += power[t]


@entry
def apply(planes, rows, shifts, demix, scale, out):  # pragma: no cover - compiled
    """``out[n, f] = scale * demix[f, n] @ z_f`` ``(n_src, n_freq, n_frames)`` complex128."""
    n_freq, n_frames = planes.shape[1], planes.shape[3]
    y_re = np.empty(n_frames)
    y_im = np.empty(n_frames)
    for f in range(n_freq):
        for n in range(demix.shape[1]):
            _outputs(planes, f, rows, shifts, demix[f, n], y_re, y_im)
            for t in range(n_frames):
                out[n, f, t] = complex(scale * y_re[t], scale * y_im[t])


def warm_up() -> None:
    """Compile (or load from the cache) the sweeps for the argument types the engine uses."""
    current = np.ones((2, 3, 4), dtype=np.complex128)
    frames, _ = taps_frames(current, current, 1, 1)
    demix = np.zeros((3, 2, frames.width), dtype=np.complex128)
    demix[:, :, :2] = np.eye(2)
    rows, shifts = frames.row_map()
    basis = np.ones((2, 3, 2))
    activation = np.ones((2, 2, 4))
    act_num, act_den = np.zeros_like(activation), np.zeros_like(activation)
    outputs = np.zeros((3, 2, 2, 4))
    for code in (RULE_IP, RULE_IP_OUTPUTS):
        sweep(frames.planes, rows, shifts, outputs, np.ones(2), demix, basis, activation, act_num,
              act_den, np.zeros(2), code, True, True, 1e-12, LOADING, FLOOR, 0, 3)  # fmt: skip
    power = np.zeros((2, 4))
    iva_args = (RULE_IP, LOADING, FLOOR, 0, 3)
    iva_sweep(frames.planes, rows, shifts, demix, np.ones((2, 4)), power, *iva_args)
    frames.demix_apply(demix)


def iterate(
    frames: TapsFrames,
    demix: np.ndarray,
    model: SourceModel,
    rule: str,
    n_iter: int,
    *,
    normalize: bool,
    record_loss: bool,
    eps: float,
    callback: Callback | None = None,
    tap_refresh: int = 1,
) -> tuple[list[float], int]:
    """:func:`ilrma_cli.engine.reference.iterate` on the stacked-taps observation, one sweep an iteration.

    ``demix`` ``(n_freq, n_sources, K)``; the order of the updates and the loss are those of
    :func:`ilrma_cli.engine.compiled.iterate` (``rule`` ``iss`` is T-ISS; ``ip`` with
    ``tap_refresh`` R > 1 sweeps with :data:`RULE_IP_OUTPUTS` but on every R-th iteration, as
    :func:`ilrma_cli.engine.taps.taps_rule`, keeping the outputs ``n_sources B 16`` bytes
    from one sweep to the next for it).
    """
    rows, shifts = frames.row_map()
    refresh = rule == "ip" and tap_refresh > 1
    n_frames = frames.planes.shape[3]
    outputs = np.empty((frames.n_freq if refresh else 0, demix.shape[1], 2, n_frames))
    scale = np.ones(demix.shape[1])

    def one_sweep(*args: object) -> float:
        return float(sweep(frames.planes, rows, shifts, outputs, scale, *args))

    def rescaled(gain: np.ndarray) -> None:
        scale[:] = 1.0 / np.sqrt(gain)

    return compiled.run_sweeps(
        one_sweep,
        demix,
        model,
        rule,
        n_iter,
        (frames.n_freq, frames.planes.shape[3]),
        normalize=normalize,
        record_loss=record_loss,
        eps=eps,
        callback=callback,
        between=(tap_refresh, RULE_IP_OUTPUTS) if refresh else None,
        rescaled=rescaled,
    )


def iterate_iva(frames: TapsFrames, demix: np.ndarray, rule: str, n_iter: int, eps: float) -> None:
    """``n_iter`` IVA-T iterations in place on ``demix`` (:func:`ilrma_cli.engine.compiled.iterate_iva` with taps)."""
    rows, shifts = frames.row_map()

    def one_sweep(*args: object) -> None:
        iva_sweep(frames.planes, rows, shifts, *args)

    shape = (frames.n_freq, frames.planes.shape[3])
    compiled.run_iva_sweeps(one_sweep, demix, shape, rule, n_iter, eps)
