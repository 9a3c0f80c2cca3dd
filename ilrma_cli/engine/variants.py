"""The ILRMA loop for the source models of :mod:`ilrma_cli.engine.models` and consistent ILRMA.

Same steps as :func:`ilrma_cli.engine.ilrma.run` (source-model update, demixing
update, power normalisation, loss) with two generalisations:

* the demixing update uses the model's weights ``1 / b`` (``1 / R`` for Gaussian
  models, a mix of ``R`` and ``|y|^2`` for t-ILRMA);
* optional STFT consistency (Kitamura & Yatabe, "Consistent independent low-rank
  matrix analysis for determined blind source separation", EURASIP JASP 2020):
  after each iteration the source model sees the power of the *consistent*
  spectrogram ``STFT(iSTFT(y))`` instead of ``|y|^2``. The projection acts on
  the signals scaled back to the reference microphone (projection back), so that
  the arbitrary per-frequency scale of ``W`` does not distort it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ilrma_cli.engine.demix import UPDATES, weighted_covariances
from ilrma_cli.engine.features import outer_features
from ilrma_cli.engine.models import SourceModel, make_model
from ilrma_cli.engine.scaling import mixing_matrices

if TYPE_CHECKING:
    from ilrma_cli.engine.ilrma import Callback, ILRMAConfig, Result

# Maps a spectrogram (n_sources, n_freq, n_frames) to the STFT of its inverse STFT.
Consistency = Callable[[np.ndarray], np.ndarray]


def run_variant(
    obs: np.ndarray,
    config: ILRMAConfig,
    rng: np.random.Generator,
    callback: Callback | None,
    consistency: Consistency | None,
    eps: float,
    start: np.ndarray | None = None,
) -> Result:
    """Loop of :func:`ilrma_cli.engine.ilrma.run` for ``config.model`` and ``consistency``.

    ``obs`` is validated ``(n_channels, n_freq, n_frames)``; ``start`` the initial
    demixing matrices (default identity). Returns the same ``Result``.
    """
    from ilrma_cli.engine.ilrma import Result  # the engine module imports this one

    n_ch, n_freq, n_frames = obs.shape
    scale = float(np.sqrt(np.mean(obs.real**2 + obs.imag**2)))
    scale = scale if scale > 0 else 1.0
    x = np.ascontiguousarray((obs / scale).transpose(1, 0, 2))  # (n_freq, n_ch, n_frames)
    feats = outer_features(obs / scale)  # (n_freq, n_ch**2, n_frames)

    demix = np.tile(np.eye(n_ch, dtype=np.complex128), (n_freq, 1, 1)) if start is None else start
    model = make_model(config.model, n_ch, n_freq, n_frames, config.n_basis, rng, eps, config.dof)
    update_demix = UPDATES[config.update]

    out = demix @ x
    power = _power(out)
    variance = model.variance(eps)
    losses = [_loss(model, power, variance, demix)] if config.record_loss else []

    n_done = 0
    for it in range(1, config.n_iter + 1):
        variance = model.update(power, eps)
        update_demix(demix, weighted_covariances(feats, model.demix_weights(power, variance)))
        out = demix @ x
        power = _power(out)
        if config.normalize:
            gain = power.mean(axis=(1, 2))
            gain[gain <= eps] = 1.0  # a silent output keeps its scale
            demix /= np.sqrt(gain)[None, :, None]
            out /= np.sqrt(gain)[None, :, None]
            power /= gain[:, None, None]
            model.rescale(1.0 / gain)
        if consistency is not None:
            power = consistent_power(out, demix, consistency)
        variance = model.variance(eps)
        n_done = it
        loss = float("nan")
        if config.record_loss:
            loss = _loss(model, power, variance, demix)
            losses.append(loss)
        if callback is not None and callback(it, loss):
            break

    return Result(
        separated=np.ascontiguousarray((out * scale).transpose(1, 0, 2)),
        demix=demix,
        basis=model.basis,
        activation=model.activation,
        loss=np.asarray(losses),
        n_iter=n_done,
    )


def consistent_power(out: np.ndarray, demix: np.ndarray, consistency: Consistency) -> np.ndarray:
    """``|P(y)|^2`` ``(n_sources, n_freq, n_frames)``: ``P`` = consistency in the mic-0 scale.

    ``out`` is ``(n_freq, n_sources, n_frames)``; with ``d = (W^{-1})[0, n]`` per
    frequency, ``P(y) = STFT(iSTFT(d y)) / d``.
    """
    gains = mixing_matrices(demix)[:, 0, :]  # (n_freq, n_sources)
    safe = np.where(np.abs(gains) > 1e-12, gains, 1.0)
    projected = consistency((out * safe[:, :, None]).transpose(1, 0, 2))
    projected /= safe.T[:, :, None]
    return projected.real**2 + projected.imag**2


def _loss(model: SourceModel, power: np.ndarray, variance: np.ndarray, demix: np.ndarray) -> float:
    """Negative log-likelihood, ``source_nll - 2 n_frames sum_f log|det W_f|``."""
    _, logdet = np.linalg.slogdet(demix)
    return model.source_nll(power, variance) - 2.0 * power.shape[-1] * float(np.sum(logdet))


def _power(out: np.ndarray) -> np.ndarray:
    return (out.real**2 + out.imag**2).transpose(1, 0, 2)
