"""Convolutional demixing for joint dereverberation and separation: the stacked-taps observation.

Each output is the current frame demixed minus a prediction of its late reverberation
from ``L`` past frames after a delay of ``D`` frames (per frequency):

    ``y_t = W x_t - sum_{l<L} G_l x_{t-D-l} = P z_t``,
    ``z_t = [x_t; x_{t-D}; ...; x_{t-D-L+1}]``, ``P = [W, -G_0, ..., -G_{L-1}]``

(ILRMA-T / IVA-T: Kagami, Kameoka and Yukawa, ICASSP 2018; Ikeshita, Ito, Nakatani and
Sawada, WASPAA 2019). ``P`` ``(n_freq, n_sources, K)`` is the extended demixing matrix the
reference loop updates in place of ``W``; the current frame has ``n_sources`` channels
(the principal subspace when there are fewer sources than mics) and the past frames every
mic, so ``K = n_sources + L n_mics``. The Jacobian of ``z -> y`` with the past fixed is
``W``: the loss is ``source nll - 2 n_frames sum_f log|det W_f|``, and ``G`` is not in it.

The extended weighted covariances ``U_n = mean_t z z^H / b_n`` ``(K, K)`` serve every rule:
with ``P`` completed to a square matrix by ``[0, I]`` rows, ``det = det W`` and column n of
its inverse is ``[W^{-1} e_n; 0]``, so IP and IP2 (:mod:`ilrma_cli.engine.spatial`) run
unchanged on the extended rows with that zero-padded column (ILRMA-T's joint update of
``w_n`` and ``g_n``), and ISS runs unchanged on the separation part; T-ISS adds rank-1
steps on the tap columns (:func:`update_t_iss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilrma_cli.engine.observation import FLOOR, LOADING, freq_blocks
from ilrma_cli.engine.spatial import UPDATES, DemixUpdate, update_ip, update_iss


def stack_frames(current: np.ndarray, past: np.ndarray, taps: int, delay: int) -> np.ndarray:
    """``z`` ``(n_freq, n_cur + taps * n_past, n_frames)`` (complex128), zeros before the first frame.

    ``current`` ``(n_cur, n_freq, n_frames)`` and ``past`` ``(n_past, n_freq, n_frames)``;
    rows ``n_cur + l n_past + i`` hold mic ``i`` of ``past`` delayed by ``delay + l`` frames.
    """
    n_cur, n_freq, n_frames = current.shape
    n_past = past.shape[0]
    stacked = np.zeros((n_freq, n_cur + taps * n_past, n_frames), dtype=np.complex128)
    stacked[:, :n_cur] = current.transpose(1, 0, 2)
    for lag in range(taps):
        shift = delay + lag
        if shift < n_frames:
            rows = slice(n_cur + lag * n_past, n_cur + (lag + 1) * n_past)
            stacked[:, rows, shift:] = past[:, :, : n_frames - shift].transpose(1, 0, 2)
    return stacked


def extend(demix: np.ndarray, width: int) -> np.ndarray:
    """``[W, 0]`` ``(n_freq, n_sources, width)``: no filter yet (complex128)."""
    out = np.zeros(demix.shape[:2] + (width,), dtype=np.complex128)
    out[..., : demix.shape[2]] = demix
    return out


@dataclass
class TapsObservation:
    """The stacked frames ``z`` ``(n_freq, K, n_frames)`` (complex128, working scale).

    The same calls as :class:`ilrma_cli.engine.observation.Observation`, on extended
    demixing matrices ``(n_freq, n_sources, K)``; ``n_channels`` is the current frame's.
    """

    stacked: np.ndarray
    n_channels: int

    @property
    def n_freq(self) -> int:
        return self.stacked.shape[0]

    @property
    def width(self) -> int:
        """``K``: the length of the stacked vector."""
        return self.stacked.shape[1]

    def weighted_covariances(self, weights: np.ndarray) -> np.ndarray:
        """``U[f, n] = mean_t z z^H w_nft`` ``(n_freq, n_sources, K, K)``, Hermitian, loaded.

        ``weights`` ``(n_sources, n_freq, n_frames)``; the diagonal gets
        ``LOADING * max(trace / K, FLOOR)`` as the plain observation's.
        """
        n_freq, width, n_frames = self.stacked.shape
        cov = np.empty((n_freq, weights.shape[0], width, width), dtype=np.complex128)
        for freqs in freq_blocks(n_freq, n_frames * width):
            z = self.stacked[freqs]
            z_h = z.conj().transpose(0, 2, 1)
            for n, weight in enumerate(weights):
                cov[freqs, n] = (z * weight[freqs, None, :]) @ z_h
        cov /= n_frames
        cov += cov.conj().swapaxes(-1, -2)
        cov *= 0.5
        trace = np.einsum("fnii->fn", cov).real / width
        diag = np.arange(width)
        cov[..., diag, diag] += (LOADING * np.maximum(trace, FLOOR))[..., None]
        return cov

    def demix_apply(self, demix: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """``scale * y`` ``(n_sources, n_freq, n_frames)`` of ``demix`` ``(n_freq, n_sources, K)`` (complex128)."""
        return (demix @ self.stacked).transpose(1, 0, 2) * scale

    def output_power(self, demix: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``|p_n^H z|^2`` ``(n_sources, n_freq, n_frames)`` of ``demix`` ``(n_freq, n_sources, K)``."""
        n_freq, _, n_frames = self.stacked.shape
        if out is None:
            out = np.empty((demix.shape[1], n_freq, n_frames))
        for freqs in freq_blocks(n_freq, n_frames * demix.shape[1]):
            y = demix[freqs] @ self.stacked[freqs]
            out[:, freqs] = (y.real**2 + y.imag**2).transpose(1, 0, 2)
        return out


def taps_observation(
    current: np.ndarray, past: np.ndarray, taps: int, delay: int
) -> tuple[TapsObservation, float]:
    """``(observation, mean_power)``: the stacked frames scaled to unit mean power of ``current``.

    ``current`` ``(n_cur, n_freq, n_frames)`` is what ``W`` demixes, ``past`` ``(n_mics, n_freq,
    n_frames)`` what the filters predict from; both get the same scale (a silent ``current``
    keeps its scale, ``mean_power`` 1).
    """
    stacked = stack_frames(current, past, taps, delay)
    n_cur = current.shape[0]
    head = stacked[:, :n_cur]
    mean_power = float(np.mean(head.real**2 + head.imag**2))
    if mean_power > 0:
        stacked /= np.sqrt(mean_power)
    return TapsObservation(stacked, n_cur), mean_power if mean_power > 0 else 1.0


def update_tap_columns(demix: np.ndarray, cov: np.ndarray) -> None:
    """T-ISS's dereverberation steps (Nakashima, Scheibler, Wakabayashi and Ono, ICASSP 2021).

    For each tap column ``c`` (``c >= n_sources``) in turn, every output loses its
    weighted least-squares prediction from ``z_c``: ``y_n <- y_n - v_n z_c``,
    ``v_n = sum_t y_n z_c^* / b_n / sum_t |z_c|^2 / b_n = (p_n^H U_n)_c / (U_n)_cc``,
    i.e. ``P <- P - v e_c^T`` (a rank-1 update; ``det W`` is unchanged, so each step
    minimises the loss exactly in ``v`` with the weights fixed). ``p_n^H U_n`` is kept up
    to date by the same rank-1 correction, so no matrix is inverted.
    """
    n_src, width = demix.shape[1], demix.shape[2]
    row_cov = np.einsum("fnk,fnkj->fnj", demix, cov)  # p_n^H U_n  (n_freq, n_src, K)
    diag = np.einsum("fnkk->fnk", cov).real
    for col in range(n_src, width):
        pivot = diag[:, :, col]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(pivot > FLOOR, row_cov[:, :, col] / pivot, 0.0)
        demix[:, :, col] -= v
        row_cov -= v[:, :, None] * cov[:, :, col, :]


def update_t_iss(demix: np.ndarray, cov: np.ndarray) -> None:
    """T-ISS (Nakashima et al., ICASSP 2021, arXiv 2102.06322): tap steps, then ISS.

    :func:`update_tap_columns` on the filters, then the separation steps of ISS
    (:func:`ilrma_cli.engine.spatial.update_iss`) on the extended rows:
    ``P <- P - v p_k^H`` with ``v_n = p_n^H U_n p_k / p_k^H U_n p_k`` (``n != k``) and
    ``v_k = 1 - (p_k^H U_n p_k)^{-1/2}``; no matrix inversion anywhere.
    """
    update_tap_columns(demix, cov)
    update_iss(demix, cov)


def update_ip_outputs(demix: np.ndarray, cov: np.ndarray) -> None:
    """IP on the outputs ``y = P z``: ``P <- A P``, ``A`` ``(n_sources, n_sources)`` from one IP
    sweep (:func:`ilrma_cli.engine.spatial.update_ip`, from ``A = I``) on ``V_n = P U_n P^H``.

    With ``P = A P_0`` the auxiliary function of the rules is ``sum_n a_n V_n a_n^H - 2 log|det
    A|`` plus terms free of ``A`` (``det W = det A det W_0``), so this is IP's MM step over
    ``A``: the outputs are demixed again and each keeps the filters of the rows it mixes.
    At taps = 0 it is IP itself (``(W U_n)^{-1} e_n = W^H (W U_n W^H)^{-1} e_n``). It needs
    ``V_n`` only, ``mean_t y y^H / b_n`` plus the loading ``P P^H``: no ``K x K`` solve, and
    the compiled backend forms no ``K x K`` covariance for it.
    """
    outputs = np.einsum("fik,fnkl,fjl->fnij", demix, cov, demix.conj())
    outputs = 0.5 * (outputs + outputs.conj().swapaxes(-1, -2))
    n_freq, n_src = demix.shape[:2]
    mixing = np.tile(np.eye(n_src, dtype=np.complex128), (n_freq, 1, 1))
    update_ip(mixing, outputs)
    demix[:] = mixing @ demix


TAPS_UPDATES: dict[str, DemixUpdate] = {**UPDATES, "iss": update_t_iss}


def taps_rule(rule: str, refresh: int, iteration: int) -> DemixUpdate:
    """The update of ILRMA-T ``iteration`` (1, 2, ...): ``rule``'s (:data:`TAPS_UPDATES`), except
    that ``ip`` with ``refresh`` R > 1 updates the filters jointly with ``W`` (ILRMA-T's IP,
    a ``K x K`` solve) only on iterations 1, R + 1, 2R + 1, ... and runs
    :func:`update_ip_outputs` between. Each is an MM step of the same loss, so it never rises;
    on the reverberant dev cases R = 2 and 4 separate as well as R = 1 (DEREVERB.md, "Refreshing
    the filters every few iterations")."""
    if rule == "ip" and (iteration - 1) % refresh:
        return update_ip_outputs
    return TAPS_UPDATES[rule]
