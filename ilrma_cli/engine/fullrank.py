"""Full-rank spatial model of the FastMNMF2 class: the numpy reference.

The mixture ``x_ft`` (``n_mics`` channels) is modelled as zero-mean complex
Gaussian with a full-rank covariance per source whose spatial part is jointly
diagonalised by ``Q_f`` (Ito & Nakatani, ICASSP 2019; Sekiguchi, Bando,
Nugraha, Yoshii and Kawahara, "Fast multichannel nonnegative matrix
factorization with directivity-aware jointly-diagonalizable spatial covariance
matrices for blind source separation", IEEE/ACM TASLP 28, 2020, FastMNMF2)::

    x_ft ~ N_c(0, sum_n lambda_nft Q_f^{-1} diag(g_n) Q_f^{-H})
    lambda_nft = sum_k basis[n, f, k] activation[n, k, t]      (NMF)

with spatial weights ``g_n >= 0`` ``(n_src, n_mics)`` shared by every frequency
(FastMNMF2), or one set per frequency ``g_nf`` ``(n_src, n_freq, n_mics)`` (the
weights of FastMNMF, Sekiguchi et al., EUSIPCO 2019, and Ito & Nakatani's FastMNMF:
a spatial covariance per source and frequency, jointly diagonalised). Every rule
below takes either layout; with per-frequency weights the sums over ``f`` of the
weight update drop out and the normalisation is per frequency.
With ``xt_mft = |q_fm^H x_ft|^2`` (``q_fm^H`` row m of ``Q_f``) and the model
power ``yt_mft = sum_n g_nm lambda_nft``, the negative log-likelihood is, up to
constants, ``sum_mft (xt / yt + log yt) - 2 n_frames sum_f log|det Q_f|``. With
``n_src = n_mics`` and one-hot ``g`` it is the loss of Gaussian ILRMA with
``W_f = Q_f``. Every update below is a majorisation-minimisation step of it, so
the loss never rises.

Layouts: ``obs`` ``(n_mics, n_freq, n_frames)`` complex; ``diagonaliser``
``(n_freq, n_mics, n_mics)`` complex; ``spatial_weights`` ``(n_src, n_mics)`` or ``(n_src, n_freq, n_mics)``;
``basis`` ``(n_src, n_freq, n_basis)``; ``activation`` ``(n_src, n_basis, n_frames)``;
projected and model powers ``(n_mics, n_freq, n_frames)``; source variances
``(n_src, n_freq, n_frames)``. This module favours clarity over speed; the
compiled iteration (:mod:`ilrma_cli.engine.fullrank_compiled`) is tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilrma_cli.engine.observation import LOADING, freq_blocks
from ilrma_cli.engine.types import Callback

# Floor of variances and model powers (the engine works on unit-mean-power data).
EPS = 1e-12


@dataclass
class FullRankModel:
    """Parameters of the model (updated in place by the rules below)."""

    diagonaliser: np.ndarray  # (n_freq, n_mics, n_mics) complex, row m is q_fm^H
    spatial_weights: np.ndarray  # (n_src, n_mics), or (n_src, n_freq, n_mics), >= 0
    basis: np.ndarray  # (n_src, n_freq, n_basis)
    activation: np.ndarray  # (n_src, n_basis, n_frames)

    def copy(self) -> FullRankModel:
        return FullRankModel(
            self.diagonaliser.copy(),
            self.spatial_weights.copy(),
            self.basis.copy(),
            self.activation.copy(),
        )


def projected_power(obs: np.ndarray, diagonaliser: np.ndarray) -> np.ndarray:
    """``xt[m, f, t] = |q_fm^H x_ft|^2`` ``(n_mics, n_freq, n_frames)``."""
    return np.abs(np.einsum("fmj,jft->mft", diagonaliser, obs)) ** 2


def weights_by_freq(weights: np.ndarray, n_freq: int) -> np.ndarray:
    """The spatial weights as ``(n_src, n_freq, n_mics)`` (a broadcast view of shared ones)."""
    if weights.ndim == 3:
        return weights
    return np.broadcast_to(weights[:, None, :], (weights.shape[0], n_freq, weights.shape[1]))


def source_variances(model: FullRankModel, eps: float = EPS) -> np.ndarray:
    """``lambda = basis @ activation`` ``(n_src, n_freq, n_frames)``, floored at ``eps``."""
    return np.maximum(model.basis @ model.activation, eps)


def model_power(model: FullRankModel, eps: float = EPS) -> np.ndarray:
    """``yt[m, f, t] = sum_n g_nfm lambda_nft`` ``(n_mics, n_freq, n_frames)``, floored at ``eps``."""
    variances = source_variances(model, eps)
    weights = weights_by_freq(model.spatial_weights, variances.shape[1])
    return np.maximum(np.einsum("nfm,nft->mft", weights, variances), eps)


def negative_log_likelihood(obs: np.ndarray, model: FullRankModel, eps: float = EPS) -> float:
    """``sum_mft (xt / yt + log yt) - 2 n_frames sum_f log|det Q_f|`` (constants dropped)."""
    proj = projected_power(obs, model.diagonaliser)
    power = model_power(model, eps)
    _, logdet = np.linalg.slogdet(model.diagonaliser)
    return float(np.sum(proj / power + np.log(power)) - 2.0 * obs.shape[-1] * np.sum(logdet))


def _weighted_ratios(
    weights: np.ndarray, proj: np.ndarray, power: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(sum_m g_nfm xt_m / yt_m^2, sum_m g_nfm / yt_m)``, each ``(n_src, n_freq, n_frames)``."""
    inv = 1.0 / power
    weights = weights_by_freq(weights, power.shape[1])
    return (
        np.einsum("nfm,mft->nft", weights, proj * inv * inv),
        np.einsum("nfm,mft->nft", weights, inv),
    )


def update_basis(
    model: FullRankModel, proj: np.ndarray, power: np.ndarray, eps: float = EPS
) -> None:
    """NMF basis (Sekiguchi et al., TASLP 2020, MM update of W):

    ``w_nkf <- w_nkf sqrt( sum_tm g_nm h_nkt xt_mft / yt_mft^2 / sum_tm g_nm h_nkt / yt_mft )``

    ``power`` is the model power ``yt`` of the current parameters (the MM auxiliary point).
    """
    num, den = _weighted_ratios(model.spatial_weights, proj, power)
    act_t = model.activation.transpose(0, 2, 1)
    model.basis *= np.sqrt((num @ act_t) / np.maximum(den @ act_t, eps))
    np.maximum(model.basis, eps, out=model.basis)


def update_activation(
    model: FullRankModel, proj: np.ndarray, power: np.ndarray, eps: float = EPS
) -> None:
    """NMF activation (Sekiguchi et al., TASLP 2020, MM update of H):

    ``h_nkt <- h_nkt sqrt( sum_fm g_nm w_nkf xt_mft / yt_mft^2 / sum_fm g_nm w_nkf / yt_mft )``
    """
    num, den = _weighted_ratios(model.spatial_weights, proj, power)
    basis_t = model.basis.transpose(0, 2, 1)
    model.activation *= np.sqrt((basis_t @ num) / np.maximum(basis_t @ den, eps))
    np.maximum(model.activation, eps, out=model.activation)


def update_spatial_weights(
    model: FullRankModel, proj: np.ndarray, power: np.ndarray, eps: float = EPS
) -> None:
    """Spatial weights (Sekiguchi et al., TASLP 2020, MM update of g), shared over frequency:

    ``g_nm <- g_nm sqrt( sum_ft lambda_nft xt_mft / yt_mft^2 / sum_ft lambda_nft / yt_mft )``

    or per frequency (FastMNMF1, the same MM step without the sum over ``f``):
    ``g_nfm <- g_nfm sqrt( sum_t lambda_nft xt_mft / yt_mft^2 / sum_t lambda_nft / yt_mft )``.
    """
    variances = source_variances(model, eps)
    inv = 1.0 / power
    sums = "nft,mft->nm" if model.spatial_weights.ndim == 2 else "nft,mft->nfm"
    num = np.einsum(sums, variances, proj * inv * inv)
    den = np.einsum(sums, variances, inv)
    model.spatial_weights *= np.sqrt(num / np.maximum(den, eps))
    np.maximum(model.spatial_weights, eps, out=model.spatial_weights)


def weighted_covariance(obs: np.ndarray, power_m: np.ndarray) -> np.ndarray:
    """``V_fm = mean_t x_ft x_ft^H / yt_mft`` ``(n_freq, n_mics, n_mics)``, with :data:`LOADING`.

    ``power_m`` is the model power of row m ``(n_freq, n_frames)``.
    """
    n_mics, n_freq, n_frames = obs.shape
    x = obs.transpose(1, 0, 2)  # (n_freq, n_mics, n_frames)
    cov = (x / power_m[:, None, :]) @ x.conj().transpose(0, 2, 1) / n_frames
    load = LOADING * np.maximum(np.einsum("fii->f", cov).real / n_mics, EPS)
    return cov + load[:, None, None] * np.eye(n_mics)


def update_diagonaliser(model: FullRankModel, obs: np.ndarray, power: np.ndarray) -> None:
    """Rows of ``Q_f`` by iterative projection (Ono, WASPAA 2011; Sekiguchi et al., TASLP 2020):

    ``q_fm <- (Q_f V_fm)^{-1} e_m``, then ``q_fm <- q_fm / sqrt(q_fm^H V_fm q_fm)``, row
    after row, with ``V_fm = mean_t x_ft x_ft^H / yt_mft`` (which does not depend on ``Q``).
    A row whose update is not finite (singular ``Q_f V_fm``) keeps its value.
    """
    q_all = model.diagonaliser
    n_freq, n_mics, _ = q_all.shape
    for m in range(n_mics):
        cov = weighted_covariance(obs, power[m])
        unit = np.zeros((n_freq, n_mics, 1), dtype=complex)
        unit[:, m] = 1.0
        with np.errstate(all="ignore"):
            try:
                row = np.linalg.solve(q_all @ cov, unit)[..., 0]
            except np.linalg.LinAlgError:
                row = np.full((n_freq, n_mics), np.nan + 0j)
            quad = np.einsum("fi,fij,fj->f", row.conj(), cov, row).real
            row /= np.sqrt(quad)[:, None]
        ok = np.isfinite(row).all(axis=-1)
        q_all[ok, m, :] = row[ok].conj()


def normalise(model: FullRankModel) -> None:
    """Scale fix that leaves the model (and the loss) unchanged (Sekiguchi et al., TASLP 2020):

    ``phi_f = tr(Q_f Q_f^H) / M``: ``Q_f /= sqrt(phi_f)``, ``w_nkf /= phi_f``; then
    ``mu_n = sum_m g_nm``: ``g_n /= mu_n``, ``w_n *= mu_n`` (per frequency with
    per-frequency weights: ``mu_nf``, ``w_nkf *= mu_nf``); then ``nu_nk = sum_f w_nkf``:
    ``w_nk /= nu_nk``, ``h_nk *= nu_nk``.
    """
    n_mics = model.diagonaliser.shape[-1]
    phi = np.einsum("fij,fij->f", model.diagonaliser, model.diagonaliser.conj()).real / n_mics
    model.diagonaliser /= np.sqrt(phi)[:, None, None]
    model.basis /= phi[None, :, None]
    mu = model.spatial_weights.sum(axis=-1)  # (n_src,) or (n_src, n_freq)
    model.spatial_weights /= mu[..., None]
    model.basis *= mu[:, None, None] if mu.ndim == 1 else mu[:, :, None]
    nu = model.basis.sum(axis=1)  # (n_src, n_basis)
    model.basis /= nu[:, None, :]
    model.activation *= nu[:, :, None]


def iterate(
    obs: np.ndarray,
    model: FullRankModel,
    n_iter: int,
    callback: Callback | None = None,
    eps: float = EPS,
) -> list[float]:
    """``n_iter`` iterations in place (basis, activation, weights, diagonaliser, normalisation).

    Returns the loss at the start and after each iteration done; ``callback(it, loss)``
    returning True stops after that iteration.
    """
    losses = [negative_log_likelihood(obs, model, eps)]
    for it in range(1, n_iter + 1):
        proj = projected_power(obs, model.diagonaliser)
        update_basis(model, proj, model_power(model, eps), eps)
        update_activation(model, proj, model_power(model, eps), eps)
        update_spatial_weights(model, proj, model_power(model, eps), eps)
        update_diagonaliser(model, obs, model_power(model, eps))
        normalise(model)
        losses.append(negative_log_likelihood(obs, model, eps))
        if callback is not None and callback(it, losses[-1]):
            break
    return losses


def wiener_images(
    obs: np.ndarray, model: FullRankModel, ref_mic: int | None = 0, eps: float = EPS
) -> np.ndarray:
    """Multichannel Wiener filter: ``c_nft = Q_f^{-1} diag(g_nf lambda_nft / yt_ft) Q_f x_ft``.

    Returns the source images at ``ref_mic`` ``(n_src, n_freq, n_frames)``, or at every
    microphone ``(n_src, n_mics, n_freq, n_frames)`` when ``ref_mic`` is None. Computed
    over blocks of frequencies, so the temporaries stay small; the images sum to ``obs``
    (up to the floors).
    """
    n_mics, n_freq, n_frames = obs.shape
    n_src = model.spatial_weights.shape[0]
    dtype = np.result_type(obs.dtype, np.complex64)
    shape = (n_src, n_freq, n_frames) if ref_mic is not None else (n_src, n_mics, n_freq, n_frames)
    out = np.empty(shape, dtype=dtype)
    mixing = np.linalg.inv(model.diagonaliser)  # (n_freq, n_mics, n_mics)
    g_all = weights_by_freq(model.spatial_weights, n_freq)
    for freqs in freq_blocks(n_freq, n_frames * max(n_src, n_mics)):
        q_x = np.einsum("fmj,jft->mft", model.diagonaliser[freqs], obs[:, freqs])
        variances = np.maximum(model.basis[:, freqs] @ model.activation, eps)
        g = g_all[:, freqs]  # (n_src, f, n_mics)
        power = np.maximum(np.einsum("nfm,nft->mft", g, variances), eps)
        q_x /= power
        for n in range(n_src):
            filtered = g[n].T[:, :, None] * variances[n][None] * q_x  # (n_mics, f, t)
            if ref_mic is None:
                out[n, :, freqs] = np.einsum("fim,mft->ift", mixing[freqs], filtered)
            else:
                out[n, freqs] = np.einsum("fm,mft->ft", mixing[freqs, ref_mic], filtered)
    return out
