"""The reference loop: every model's iterations in the order of the papers, in plain numpy.

One iteration (Kitamura et al., IEEE/ACM TASLP 24(9), 2016, Algorithm 1, with the
source model and the spatial rule injected):

1. source-model update to the current output powers (``model.update``);
2. weights ``1 / b`` of the spatial majoriser (``model.weights``);
3. weighted covariances ``U_n = mean_t x x^H / b_n`` (``observation``);
4. the spatial rule: IP, IP2 or ISS on the demixing matrices (:mod:`ilrma_cli.engine.spatial`);
5. output powers ``|w_n^H x|^2`` of the new demixing matrices;
6. power normalisation (:func:`normalise`), then the loss (:func:`negative_log_likelihood`).

It runs every source model (:mod:`ilrma_cli.engine.source_models`) and, on the
stacked-taps observation (:mod:`ilrma_cli.engine.taps`), joint dereverberation and
separation with extended demixing matrices ``[W, -G]``; it is what the compiled sweeps
(:mod:`ilrma_cli.engine.compiled`) are tested against from the same initial state.
Per-bin arrays are float64 whatever the precision.
"""

from __future__ import annotations

import numpy as np

from ilrma_cli.engine import linalg
from ilrma_cli.engine.observation import Observation
from ilrma_cli.engine.source_models import SourceModel
from ilrma_cli.engine.spatial import UPDATES
from ilrma_cli.engine.taps import TapsObservation, taps_rule
from ilrma_cli.engine.types import Callback, loss_wanted


def log_det_sum(demix: np.ndarray) -> float:
    """``sum_f log|det W_f|`` of ``demix`` ``(n_freq, n_sources, n_channels)`` (``-inf`` if singular)."""
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log(np.abs(linalg.det(demix)))))


def negative_log_likelihood(
    model: SourceModel, power: np.ndarray, variance: np.ndarray, demix: np.ndarray
) -> float:
    """``nll(|y|^2; R) - 2 n_frames sum_f log|det W_f|`` (TASLP 2016, eq. 25, up to constants).

    ``power`` and ``variance`` are ``(n_sources, n_freq, n_frames)``; the source part is the
    model's own (Gaussian: ``sum |y|^2 / R + log R``). An extended ``demix`` ``[W, -G]``
    (:mod:`ilrma_cli.engine.taps`) enters through ``W`` alone.
    """
    n_src = demix.shape[1]
    return model.nll(power, variance) - 2.0 * power.shape[-1] * log_det_sum(demix[..., :n_src])


def normalise(
    demix: np.ndarray, model: SourceModel, mean_power: np.ndarray, eps: float
) -> np.ndarray:
    """Power normalisation: every output to unit mean power, the model rescaled alike.

    ``W_n /= sqrt(g_n)`` and ``R_n /= g_n`` with ``g_n`` = ``mean_power`` ``(n_sources,)``
    (TASLP 2016, Sec. IV-A: the likelihood is unchanged up to the ``log g`` constants, and
    the scales stay away from the floors). A silent output (``g_n <= eps``) keeps its
    scale. Returns the gains applied.
    """
    gain = np.where(mean_power > eps, mean_power, 1.0)
    demix /= np.sqrt(gain)[None, :, None]
    model.rescale(1.0 / gain)
    return gain


def iterate(
    observation: Observation | TapsObservation,
    demix: np.ndarray,
    model: SourceModel,
    rule: str,
    n_iter: int,
    *,
    normalize: bool,
    record_loss: bool,
    eps: float,
    callback: Callback | None = None,
    tap_refresh: int = 1,
) -> tuple[list[float], int]:
    """``n_iter`` iterations in place on ``demix`` and ``model``; ``(losses, n_done)``.

    ``losses``: the start and every iteration's with ``record_loss``, else only the last
    iteration's (empty if the callback stopped the run before it); a callback then sees
    the loss of every tenth iteration too (:func:`ilrma_cli.engine.types.loss_wanted`).

    ``demix`` ``(n_freq, n_sources, n_channels)``, or ``(n_freq, n_sources, K)`` on a
    :class:`TapsObservation` (whose ``iss`` is T-ISS, and whose ``ip`` refreshes the filters
    every ``tap_refresh`` iterations: :func:`ilrma_cli.engine.taps.taps_rule`).
    """
    taps = isinstance(observation, TapsObservation)
    power = observation.output_power(demix)
    variance = model.variance(eps)
    losses = [negative_log_likelihood(model, power, variance, demix)] if record_loss else []
    n_done = 0
    for it in range(1, n_iter + 1):
        variance = model.update(power, eps)
        covariances = observation.weighted_covariances(model.weights(power, variance))
        update = taps_rule(rule, tap_refresh, it) if taps else UPDATES[rule]
        update(demix, covariances)
        power = observation.output_power(demix, out=power)
        if normalize:
            gain = normalise(demix, model, power.mean(axis=(1, 2)), eps)
            power /= gain[:, None, None]
        n_done = it
        loss = float("nan")
        if loss_wanted(record_loss, callback, it, n_iter):
            loss = negative_log_likelihood(model, power, model.variance(eps), demix)
        if record_loss or it == n_iter:
            losses.append(loss)
        if callback is not None and callback(it, loss):
            break
    return losses, n_done
