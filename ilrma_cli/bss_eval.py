"""BSS Eval v3 decompositions, fast: every estimate against every reference at once.

BSS Eval projects each estimate on the span of ``FILTER_LENGTH``-tap filtered versions of
the references (Vincent, Gribonval and Fevotte 2006). The correlations that define those
projections are computed once, only at the lags they need, block-wise with short FFTs,
and shared by every estimate/reference pair; the energies of the decomposition follow
from the least-squares filters (orthogonality), and are recomputed from time signals only
where a ratio is so large that subtracting energies would lose precision. The numbers are
those of ``mir_eval.separation.bss_eval_sources`` (:mod:`ilrma_cli.metrics` chooses the
permutation and holds both backends to each other).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.fft
import scipy.linalg
from numpy.lib.stride_tricks import sliding_window_view

FILTER_LENGTH = 512  # taps of the allowed distortion filter, as in bss_eval_sources
# Energies obtained by subtraction are recomputed from time signals when smaller than this
# fraction of the signal energy (ratios above 60 dB), where cancellation could cost precision.
PRECISE_BELOW = 1e-6
SEGMENT_FFT = 8192  # FFT size for the block-wise correlations (> 2 FILTER_LENGTH)


def db(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``10 log10(num / den)``; +inf for a zero denominator, as mir_eval."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(numerator / denominator)


def pairwise_bss_eval(
    references: np.ndarray, estimates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDR, SIR and SAR of every estimate against every reference, each ``(n_est, n_ref)``.

    For estimate ``e`` and reference ``j``, with ``P_j`` the projection on the filtered
    versions of reference ``j`` and ``P`` that on all references: ``SDR = |P_j e|^2 /
    |e - P_j e|^2``, ``SIR = |P_j e|^2 / |P e - P_j e|^2``, ``SAR = |P e|^2 / |e - P e|^2``.
    By orthogonality every energy is a difference of ``|e|^2``, ``|P e|^2 = d.c`` and
    ``|P_j e|^2 = d_j.c_j`` (``d`` correlations, ``c`` least-squares filters).
    """
    n_refs = len(references)
    n_ests = len(estimates)
    # correlation[i, k, FILTER_LENGTH - 1 + l] = sum_n s_i[n + l] x_k[n], x = references, estimates
    correlation = _lagged_correlations(
        references, np.vstack([references, estimates]), FILTER_LENGTH - 1
    )
    gram = _gram_matrix(correlation[:, :n_refs])
    # cross[i, a, e] = <reference i delayed by a, estimate e> = correlation at lag -a
    cross = correlation[:, n_refs:, FILTER_LENGTH - 1 :: -1].transpose(0, 2, 1)
    cross_all = cross.reshape(n_refs * FILTER_LENGTH, n_ests)
    filters_all = _solve_gram(gram, cross_all)  # (n_refs * L, n_ests)
    blocks = [slice(j * FILTER_LENGTH, (j + 1) * FILTER_LENGTH) for j in range(n_refs)]
    filters_own = np.stack([_solve_gram(gram[b, b], cross[j]) for j, b in enumerate(blocks)])

    energy = np.einsum("en,en->e", estimates, estimates)  # |e|^2, (n_ests,)
    energy_all = np.einsum("ke,ke->e", cross_all, filters_all)  # |P e|^2, (n_ests,)
    energy_own = np.einsum("jae,jae->ej", cross, filters_own)  # |P_j e|^2, (n_ests, n_refs)
    distortion = energy[:, np.newaxis] - energy_own  # |e - P_j e|^2
    interference = energy_all[:, np.newaxis] - energy_own  # |P e - P_j e|^2
    artifacts = energy - energy_all  # |e - P e|^2

    # Where a residual is tiny, recompute it from time signals rather than by subtraction.
    filters_all = filters_all.reshape(n_refs, FILTER_LENGTH, n_ests)
    residual = _ResidualEnergy(references)
    for e in np.flatnonzero(artifacts < PRECISE_BELOW * energy):
        artifacts[e] = residual(filters_all[:, :, e], estimates[e])
    for e, j in zip(*np.nonzero(distortion < PRECISE_BELOW * energy[:, np.newaxis]), strict=True):
        own = np.zeros((n_refs, FILTER_LENGTH))
        own[j] = filters_own[j, :, e]
        distortion[e, j] = residual(own, estimates[e])
    for e, j in zip(*np.nonzero(interference < PRECISE_BELOW * energy[:, np.newaxis]), strict=True):
        difference = filters_all[:, :, e].copy()
        difference[j] -= filters_own[j, :, e]
        interference[e, j] = residual(difference)

    sdr = db(energy_own, distortion)
    sir = db(energy_own, interference)
    sar = np.repeat(db(energy_all, artifacts)[:, np.newaxis], n_refs, axis=1)
    return sdr, sir, sar


def _lagged_correlations(x: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
    """``out[p, q, max_lag + l] = sum_n x[p, n + l] y[q, n]`` for ``|l| <= max_lag``.

    ``x`` ``(P, n)``, ``y`` ``(Q, n)``; returns ``(P, Q, 2 max_lag + 1)``. ``y`` is cut into
    blocks, each correlated with the stretch of ``x`` around it through short FFTs; the
    cross-spectra are summed over blocks, so one short inverse FFT per pair remains. Cheaper
    than FFTs over the whole signal, whose lags beyond ``max_lag`` BSS Eval never uses.
    """
    n_samples = x.shape[1]
    hop = SEGMENT_FFT - 2 * max_lag
    n_blocks = -(-n_samples // hop)
    x_padded = np.zeros((len(x), n_blocks * hop + 2 * max_lag))
    x_padded[:, max_lag : max_lag + n_samples] = x
    x_spectra = scipy.fft.rfft(sliding_window_view(x_padded, SEGMENT_FFT, axis=1)[:, ::hop])
    y_blocks = np.zeros((len(y), n_blocks, SEGMENT_FFT))
    y_padded = np.zeros((len(y), n_blocks * hop))
    y_padded[:, :n_samples] = y
    y_blocks[:, :, max_lag : max_lag + hop] = y_padded.reshape(len(y), n_blocks, hop)
    y_spectra = scipy.fft.rfft(y_blocks)
    # conjugating the smaller operand correlates at reversed lags
    reversed_spectra = np.einsum("pbf,qbf->pqf", x_spectra.conj(), y_spectra)
    circular = scipy.fft.irfft(reversed_spectra, SEGMENT_FFT)
    return circular[:, :, np.arange(max_lag, -max_lag - 1, -1) % SEGMENT_FFT]


def _gram_matrix(correlation: np.ndarray) -> np.ndarray:
    """Inner products of all delayed references, ``(n_refs * L, n_refs * L)``.

    ``correlation`` ``(n_refs, n_refs, 2 L - 1)`` as from :func:`_lagged_correlations`. Block
    ``(i, j)`` holds ``<s_i delayed by a, s_j delayed by b>``: the correlation of ``s_i`` and
    ``s_j`` at lag ``b - a`` (Toeplitz).
    """
    n_refs = len(correlation)
    length = FILTER_LENGTH
    lag_index = np.arange(length)[np.newaxis, :] - np.arange(length)[:, np.newaxis] + length - 1
    blocks = correlation[:, :, lag_index]  # (i, j, a, b)
    return blocks.transpose(0, 2, 1, 3).reshape(n_refs * length, n_refs * length)


def _solve_gram(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Least-squares filters ``gram^-1 rhs``: Cholesky, least squares if ``gram`` is singular."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram, check_finite=False), rhs)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(gram, rhs, lapack_driver="gelsy", check_finite=False)[0]


class _ResidualEnergy:
    """``|target - sum_i h_i * s_i|^2`` over the ``n_samples + L - 1`` samples BSS Eval uses."""

    def __init__(self, references: np.ndarray) -> None:
        self.references = references
        self.n_out = references.shape[1] + FILTER_LENGTH - 1
        self.n_fft = scipy.fft.next_fast_len(self.n_out, real=True)

    @cached_property
    def ref_spectra(self) -> np.ndarray:
        return scipy.fft.rfft(self.references, self.n_fft, axis=1)

    def __call__(self, filters: np.ndarray, target: np.ndarray | None = None) -> float:
        """``filters`` ``(n_refs, L)``; ``target`` ``(n_samples,)`` or None (zero)."""
        spectrum = -np.sum(scipy.fft.rfft(filters, self.n_fft, axis=1) * self.ref_spectra, axis=0)
        if target is not None:
            spectrum += scipy.fft.rfft(target, self.n_fft)
        signal = scipy.fft.irfft(spectrum, self.n_fft)[: self.n_out]
        return float(signal @ signal)
