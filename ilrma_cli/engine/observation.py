"""The observation as the iterations see it: real features of the outer products ``x x^H``.

ILRMA only ever needs the observation through quadratic forms: the weighted
covariances ``U_n = mean_t x x^H / r_n`` and the output powers
``|y_n|^2 = |w_n^H x|^2 = w_n^H (x x^H) w_n``. Both are linear in the Hermitian
matrix ``x_ft x_ft^H``, which has ``m * m`` real degrees of freedom: the ``m``
powers ``|x_i|^2`` then, for every pair ``i < j``, ``Re`` and ``Im`` of
``x_i conj(x_j)``. Stored once as ``feats`` ``(n_freq, m * m, n_frames)``, they
turn both quadratic forms into real dot products over frames (in the compiled
sweeps of :mod:`ilrma_cli.engine.compiled`, or one batched matmul here), and the
complex separated signal is only formed at the end.

The features are always float64, whatever the precision of the other arrays:
an output that nearly cancels an interferer has a power far below ``|x|^2``,
and float32 features (relative rounding 6e-8) lose it; the weighted
covariances then drift and iterative projection diverges after ~50 iterations
on the dev cases. Products with single-precision arrays run block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Relative diagonal loading of the weighted covariances (times trace / n_ch): keeps
# them positive definite for silent or identical channels. It must stay near the
# rounding level: where the model deems a source silent (variance at the floor),
# U_n weighs those frames up to 1e12 times more, so condition numbers of 1e12 and
# beyond are normal, and the smallest eigenvalues carry what the rules null. A
# loading of 1e-9 cost IP 2.6 dB SDRi on a 3-talker room and made every rule
# raise the loss on sparse sources; from 1e-13 down to 0 the results no longer
# change, and 1e-14 keeps U_n's Cholesky factor computable (condition < ~1e15).
LOADING = 1e-14
# Floor of powers and quadratic forms; the engine works on unit-mean-power data.
FLOOR = 1e-12
# Time-frequency bins per block when building features or mixing precisions: the
# temporaries then stay at a few MB however long the signal is.
BLOCK_BINS = 2**18


def freq_blocks(n_freq: int, n_frames: int) -> list[slice]:
    """Consecutive frequency ranges of about ``BLOCK_BINS`` bins each (at least one frequency)."""
    step = max(1, BLOCK_BINS // max(n_frames, 1))
    return [slice(lo, lo + step) for lo in range(0, n_freq, step)]


def pairs(n_ch: int) -> list[tuple[int, int]]:
    """Channel pairs ``(i, j)``, ``i < j``, in feature order."""
    return [(i, j) for i in range(n_ch) for j in range(i + 1, n_ch)]


def outer_features(obs: np.ndarray) -> np.ndarray:
    """``feats`` ``(n_freq, m*m, n_frames)`` (float64) of ``x x^H`` for ``obs`` ``(m, n_freq, n_frames)``."""
    n_ch, n_freq, n_frames = obs.shape
    feats = np.empty((n_freq, n_ch * n_ch, n_frames))
    for freqs in freq_blocks(n_freq, n_frames):
        x = obs[:, freqs].astype(np.complex128)
        block = feats[freqs]
        for i in range(n_ch):
            block[:, i] = x[i].real ** 2 + x[i].imag ** 2
        for p, (i, j) in enumerate(pairs(n_ch)):
            cross = x[i] * x[j].conj()
            block[:, n_ch + 2 * p] = cross.real
            block[:, n_ch + 2 * p + 1] = cross.imag
    return feats


def to_hermitian(vec: np.ndarray, n_ch: int) -> np.ndarray:
    """Hermitian matrices ``(..., m, m)`` (complex128) from real features ``(..., m*m)``."""
    mat = np.empty(vec.shape[:-1] + (n_ch, n_ch), dtype=np.complex128)
    for i in range(n_ch):
        mat[..., i, i] = vec[..., i]
    for p, (i, j) in enumerate(pairs(n_ch)):
        mat[..., i, j] = vec[..., n_ch + 2 * p] + 1j * vec[..., n_ch + 2 * p + 1]
        mat[..., j, i] = mat[..., i, j].conj()
    return mat


def power_coefficients(demix: np.ndarray) -> np.ndarray:
    """``c`` ``(n_freq, n_src, m*m)`` (real) with ``|y_n|^2 = c[f, n] . feats[f, :, t]``.

    With ``y = sum_i d_i x_i`` (``d`` a row of ``demix``):
    ``|y|^2 = sum_i |d_i|^2 |x_i|^2 + 2 sum_{i<j} Re(d_i conj(d_j)) Re(x_i conj(x_j))
    - Im(d_i conj(d_j)) Im(x_i conj(x_j))``.
    """
    n_ch = demix.shape[-1]
    coef = np.empty(demix.shape[:-1] + (n_ch * n_ch,))
    coef[..., :n_ch] = demix.real**2 + demix.imag**2
    for p, (i, j) in enumerate(pairs(n_ch)):
        cross = demix[..., i] * demix[..., j].conj()
        coef[..., n_ch + 2 * p] = 2.0 * cross.real
        coef[..., n_ch + 2 * p + 1] = -2.0 * cross.imag
    return coef


def output_power(coef: np.ndarray, feats: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``|y|^2`` into ``out`` ``(n_src, n_freq, n_frames)``: ``out[n, f] = coef[f, n] @ feats[f]``.

    The quadratic form cancels when an output nearly vanishes, so rounding can
    make it slightly negative (by about ``1e-16 |x|^2``); it is clipped at zero.
    """
    out_t = out.transpose(1, 0, 2)
    if out.dtype == feats.dtype:
        np.matmul(coef, feats, out=out_t)
    else:
        for freqs in freq_blocks(*feats.shape[::2]):
            out_t[freqs] = coef[freqs] @ feats[freqs]
    return np.maximum(out, 0.0, out=out)


def weighted_feature_means(feats: np.ndarray, inv_var: np.ndarray) -> np.ndarray:
    """``mean_t feats[f, :, t] / r[n, f, t]`` ``(n_freq, n_src, m*m)`` for ``inv_var`` ``(n_src, n_freq, n_frames)``."""
    weights = inv_var.transpose(1, 0, 2)
    feats_t = feats.transpose(0, 2, 1)
    if weights.dtype == feats.dtype:
        means = weights @ feats_t
    else:
        means = np.empty(weights.shape[:2] + feats.shape[1:2])
        for freqs in freq_blocks(*feats.shape[::2]):
            means[freqs] = weights[freqs].astype(feats.dtype) @ feats_t[freqs]
    return means / feats.shape[-1]


def demix_apply(demix: np.ndarray, obs: np.ndarray, dtype: type[np.complexfloating]) -> np.ndarray:
    """``y[n, f] = demix[f, n] @ obs[:, f]`` ``(n_src, n_freq, n_frames)``, block by block."""
    n_ch, n_freq, n_frames = obs.shape
    out = np.empty((demix.shape[1], n_freq, n_frames), dtype=dtype)
    for freqs in freq_blocks(n_freq, n_frames):
        x = obs[:, freqs].transpose(1, 0, 2)
        np.matmul(demix[freqs].astype(dtype), x, out=out[:, freqs].transpose(1, 0, 2))
    return out


def weighted_covariances(feats: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``U[f, n] = mean_t x_ft x_ft^H w_nft`` ``(n_freq, n_sources, n_ch, n_ch)``, loaded.

    ``weights`` ``(n_sources, n_freq, n_frames)`` are the source model's ``1 / b``; one
    real matmul over the features serves every source. The diagonal gets
    ``LOADING * max(trace / n_ch, FLOOR)``.
    """
    n_ch = int(round(np.sqrt(feats.shape[1])))
    cov = to_hermitian(weighted_feature_means(feats, weights), n_ch)
    trace = np.einsum("fnii->fn", cov).real / n_ch
    load = LOADING * np.maximum(trace, FLOOR)
    cov[..., np.arange(n_ch), np.arange(n_ch)] += load[..., None]
    return cov


def unit_power_features(obs: np.ndarray) -> tuple[np.ndarray, float]:
    """``(feats, mean_power)``: :func:`outer_features` of ``obs`` scaled to unit mean power.

    Unit mean power is the engine's working scale (the floors are absolute); a silent
    ``obs`` keeps its scale (``mean_power`` 1).
    """
    n_ch, n_freq, n_frames = obs.shape
    feats = outer_features(obs)
    mean_power = float(np.sum(feats[:, :n_ch])) / (n_ch * n_freq * n_frames)
    if mean_power > 0:
        feats /= mean_power
    return feats, mean_power if mean_power > 0 else 1.0


@dataclass
class Observation:
    """The mixture in the working scale, through its features ``(n_freq, m*m, n_frames)`` (float64).

    What every spatial model needs of the observation: weighted covariances, the output
    powers of demixing matrices, and the demixed signals themselves (:func:`demix_apply`).
    """

    feats: np.ndarray

    @property
    def n_channels(self) -> int:
        return int(round(np.sqrt(self.feats.shape[1])))

    @property
    def n_freq(self) -> int:
        return self.feats.shape[0]

    def weighted_covariances(self, weights: np.ndarray) -> np.ndarray:
        """:func:`weighted_covariances` ``(n_freq, n_sources, m, m)`` of ``weights`` ``(n_sources, n_freq, n_frames)``."""
        return weighted_covariances(self.feats, weights)

    def output_power(self, demix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``|w_n^H x|^2`` ``(n_sources, n_freq, n_frames)`` of ``demix`` ``(n_freq, n_sources, m)``."""
        if out is None:
            n_freq, n_frames = self.feats.shape[0], self.feats.shape[2]
            out = np.empty((demix.shape[1], n_freq, n_frames))
        return output_power(power_coefficients(demix), self.feats, out)
