"""Scale fix: projection back onto the microphones (Murata et al., 2001).

The demixed signals of ILRMA have an arbitrary scale per frequency; projecting
them back through ``A = W^{-1}`` gives each source as it is heard at a microphone.
"""

from __future__ import annotations

import numpy as np


def mixing_matrices(demix: np.ndarray) -> np.ndarray:
    """``A = W^{-1}`` ``(n_freq, n_channels, n_sources)`` (pseudo-inverse where singular)."""
    try:
        mixing = np.linalg.inv(demix)
    except np.linalg.LinAlgError:
        mixing = np.linalg.pinv(demix)
    bad = ~np.isfinite(mixing).all(axis=(1, 2))
    if bad.any():
        mixing[bad] = np.linalg.pinv(demix[bad])
    return mixing


def project_back(separated: np.ndarray, demix: np.ndarray, ref_mic: int | None = 0) -> np.ndarray:
    """Rescale ``separated`` ``(n_sources, n_freq, n_frames)`` to the microphones.

    With ``ref_mic`` an index: the source at that microphone, ``(n_sources, n_freq, n_frames)``.
    With ``ref_mic=None``: source images at every microphone, ``(n_sources, n_channels, n_freq, n_frames)``.
    """
    n_ch = demix.shape[2]
    mixing = mixing_matrices(demix)  # (n_freq, n_ch, n_sources)
    if ref_mic is None:
        return np.einsum("fmn,nft->nmft", mixing, separated)
    if not 0 <= ref_mic < n_ch:
        raise ValueError(f"ref_mic must be in [0, {n_ch - 1}], got {ref_mic}")
    return mixing[:, ref_mic, :].T[:, :, None] * separated
