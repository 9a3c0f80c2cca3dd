"""More microphones than sources: reduce the observation to its principal subspace.

Per frequency, the ``k`` eigenvectors ``E_f`` ``(n_channels, k)`` of the largest
eigenvalues of the spatial covariance ``mean_t x x^H`` span (for ``k``
dominant sources in little noise) the sources' steering vectors; ILRMA then
runs on ``z = E_f^H x`` (Kitamura's principal-component whitening, without the
scaling). A demixing matrix ``W`` of ``z`` is ``W E_f^H`` of ``x``, whose
pseudo-inverse ``E_f W^{-1}`` is the least-squares mixing matrix used by the
projection back onto any microphone.
"""

from __future__ import annotations

import numpy as np


def principal_subspace(obs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(reduced, basis)``: ``reduced`` ``(k, n_freq, n_frames)``, ``basis`` ``(n_freq, n_channels, k)``.

    ``obs`` is ``(n_channels, n_freq, n_frames)``; ``reduced[:, f] = basis[f]^H obs[:, f]``.
    """
    n_ch = obs.shape[0]
    if not 1 <= k <= n_ch:
        raise ValueError(f"k must be in [1, {n_ch}], got {k}")
    x = obs.transpose(1, 0, 2)  # (n_freq, n_ch, n_frames)
    cov = x @ x.conj().transpose(0, 2, 1) / x.shape[-1]
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    basis = np.ascontiguousarray(vectors[:, :, ::-1][:, :, :k])
    reduced = basis.conj().transpose(0, 2, 1) @ x
    return np.ascontiguousarray(reduced.transpose(1, 0, 2)), basis


def expand_demix(demix: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Demixing matrices of the full observation, ``W E^H`` ``(n_freq, k, n_channels)``."""
    return demix @ basis.conj().transpose(0, 2, 1)
