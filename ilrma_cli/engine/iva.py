"""A blind start for ILRMA: a few iterations of independent vector analysis (IVA).

IVA's spherical source model gives each source one time-varying variance shared
by all frequencies, ``r_nt = mean_f |y_nft|^2`` (Gaussian IVA with a
time-varying scale; Ono, WASPAA 2011, with the Gaussian contrast). Because every
frequency of a source follows the same envelope, IVA has no permutation
problem; starting the NMF model from its demixing matrices, instead of from the
identity, helps most on reverberant speech (see QUALITY.md). Each iteration is
one compiled pass over the frequencies (:func:`ilrma_cli.engine.kernels.iva_sweep`).
"""

from __future__ import annotations

import numpy as np

from ilrma_cli.engine import small
from ilrma_cli.engine.demix import FLOOR, LOADING
from ilrma_cli.engine.features import unit_power_features


def iva_start(
    obs: np.ndarray, n_iter: int, update: str = "ip", eps: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """``(demix, loss)`` after ``n_iter`` IVA iterations from the identity.

    ``obs`` is ``(n_channels, n_freq, n_frames)``; ``demix`` ``(n_freq, n_ch, n_ch)``
    applies to ``obs`` scaled to unit mean power (as :func:`ilrma_cli.engine.ilrma.run`
    does). ``loss`` holds the IVA negative log-likelihood
    ``sum(|y|^2 / r + log r) - 2 n_frames sum_f log|det W_f|`` at the start and
    after each iteration; both steps are exact or majorisation-minimisation, so it never rises.
    """
    return iva_from_features(unit_power_features(obs), n_iter, update, eps)


def iva_from_features(
    feats: np.ndarray, n_iter: int, update: str = "ip", eps: float = 1e-12, record_loss: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`iva_start` on the unit-power features ``(n_freq, n_ch**2, n_frames)`` of the mixture.

    ``record_loss=False`` skips the loss (an empty array is returned for it).
    """
    from ilrma_cli.engine import kernels  # numba takes ~0.5 s to load: only runs pay it

    n_freq, n_feats, n_frames = feats.shape
    n_ch = int(round(np.sqrt(n_feats)))
    demix = np.tile(np.eye(n_ch, dtype=np.complex128), (n_freq, 1, 1))
    rule = kernels.KERNEL_RULES[update]
    power_sum = np.empty((n_ch, n_frames))  # sum_f |y_nft|^2
    inv_var = np.ones((n_ch, n_frames))
    kernels.iva_sweep(feats, demix, inv_var, power_sum, kernels.NO_COV, LOADING, FLOOR)
    losses = []
    for it in range(n_iter + 1):
        variance = np.maximum(power_sum / n_freq, eps)
        if record_loss:
            with np.errstate(divide="ignore"):
                logdet = np.log(np.abs(small.det(demix)))
            nll = np.sum(power_sum / variance) + n_freq * np.sum(np.log(variance))
            losses.append(float(nll - 2.0 * n_frames * np.sum(logdet)))
        if it == n_iter:
            break
        np.divide(1.0, variance, out=inv_var)
        kernels.iva_sweep(feats, demix, inv_var, power_sum, rule, LOADING, FLOOR)
    return demix, np.asarray(losses)
