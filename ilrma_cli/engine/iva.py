"""A blind start for ILRMA: a few iterations of independent vector analysis (IVA).

IVA's spherical source model gives each source one time-varying variance shared
by all frequencies, ``r_nt = mean_f |y_nft|^2`` (Gaussian IVA with a
time-varying scale; Ono, WASPAA 2011, with the Gaussian contrast). Because every
frequency of a source follows the same envelope, IVA has no permutation
problem; starting the NMF model from its demixing matrices, instead of from the
identity, helps most on reverberant speech (see QUALITY.md).
"""

from __future__ import annotations

import numpy as np

from ilrma_cli.engine.demix import UPDATES


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
    n_ch, n_freq, n_frames = obs.shape
    scale = float(np.sqrt(np.mean(obs.real**2 + obs.imag**2)))
    x = np.ascontiguousarray((obs / (scale if scale > 0 else 1.0)).transpose(1, 0, 2))
    demix = np.tile(np.eye(n_ch, dtype=np.complex128), (n_freq, 1, 1))
    update_demix = UPDATES[update]
    out = demix @ x
    losses = []
    for it in range(n_iter + 1):
        power = (out.real**2 + out.imag**2).transpose(1, 0, 2)  # (n_sources, n_freq, n_frames)
        variance = np.broadcast_to(np.maximum(power.mean(axis=1, keepdims=True), eps), power.shape)
        _, logdet = np.linalg.slogdet(demix)
        nll = np.sum(power / variance + np.log(variance)) - 2.0 * n_frames * np.sum(logdet)
        losses.append(float(nll))
        if it < n_iter:
            out = update_demix(demix, x, out, 1.0 / variance)
    return demix, np.asarray(losses)
