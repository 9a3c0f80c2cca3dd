"""Initial demixing matrices: the identity, or a few iterations of IVA.

IVA (independent vector analysis) gives each source one time-varying variance shared
by all frequencies (:class:`ilrma_cli.engine.source_models.SphericalIVA`), so it has no
permutation problem; starting the NMF model from its demixing matrices, instead of from
the identity, helps most on reverberant speech (see QUALITY.md).
"""

from __future__ import annotations

import numpy as np

from ilrma_cli.engine import reference
from ilrma_cli.engine.observation import Observation, unit_power_features
from ilrma_cli.engine.source_models import SphericalIVA
from ilrma_cli.engine.taps import TapsObservation


def identity(n_freq: int, n_sources: int, n_channels: int) -> np.ndarray:
    """``(n_freq, n_sources, n_channels)`` copies of the identity (complex128)."""
    return np.tile(np.eye(n_sources, n_channels, dtype=np.complex128), (n_freq, 1, 1))


def iva_reference(
    observation: Observation | TapsObservation,
    demix: np.ndarray,
    rule: str,
    n_iter: int,
    eps: float,
    record_loss: bool,
) -> list[float]:
    """``n_iter`` IVA iterations of the reference loop in place on ``demix``; their losses.

    The loss is the Gaussian negative log-likelihood with the shared variances
    ``sum(|y|^2 / r + log r) - 2 n_frames sum_f log|det W_f|``; the variance update is
    exact and the rules are MM steps, so it never rises.
    """
    model = SphericalIVA(np.empty((demix.shape[1], 0)), observation.n_freq)
    model.update(observation.output_power(demix), eps)  # exact start: r = mean_f |y|^2
    losses, _ = reference.iterate(
        observation, demix, model, rule, n_iter, normalize=False, record_loss=record_loss, eps=eps
    )
    return losses


def iva_start(
    obs: np.ndarray, n_iter: int, update: str = "ip", eps: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """``(demix, loss)`` after ``n_iter`` IVA iterations from the identity (reference loop).

    ``obs`` is ``(n_channels, n_freq, n_frames)``; ``demix`` ``(n_freq, n_ch, n_ch)``;
    ``loss`` holds the loss of :func:`iva_reference` at the start and after each iteration.
    """
    n_ch, n_freq, _ = obs.shape
    demix = identity(n_freq, n_ch, n_ch)
    losses = iva_reference(
        Observation(unit_power_features(obs)[0]), demix, update, n_iter, eps, True
    )
    return demix, np.asarray(losses)
