"""The compiled sweeps against a plain numpy ILRMA written from the paper's update order."""

import numpy as np
import pytest

from ilrma_cli.engine import UPDATES, ILRMAConfig, negative_log_likelihood, run
from ilrma_cli.engine.demix import weighted_covariances
from ilrma_cli.engine.features import output_power, power_coefficients, unit_power_features
from ilrma_cli.engine.ilrma import EPS
from ilrma_cli.engine.iva import iva_start
from ilrma_cli.engine.model import NMFModel


def numpy_ilrma(obs: np.ndarray, config: ILRMAConfig, seed: int) -> tuple[np.ndarray, ...]:
    """``(demix, basis, activation, losses)``: NMF update, demixing update, normalisation, loss."""
    n_ch, n_freq, n_frames = obs.shape
    feats = unit_power_features(obs)
    model = NMFModel.random(
        n_ch, n_freq, n_frames, config.n_basis, np.random.default_rng(seed), EPS
    )
    demix = np.tile(np.eye(n_ch, dtype=complex), (n_freq, 1, 1))
    power = output_power(power_coefficients(demix), feats, np.empty((n_ch, n_freq, n_frames)))
    variance = model.variance(EPS)
    losses = [negative_log_likelihood(power, variance, demix)]
    for _ in range(config.n_iter):
        variance = model.update(power, EPS)
        UPDATES[config.update](demix, weighted_covariances(feats, 1.0 / variance))
        power = output_power(power_coefficients(demix), feats, power)
        if config.normalize:
            gain = power.mean(axis=(1, 2))
            demix /= np.sqrt(gain)[None, :, None]
            power /= gain[:, None, None]
            model.rescale(1.0 / gain)
            variance = model.variance(EPS)
        losses.append(negative_log_likelihood(power, variance, demix))
    return demix, model.basis, model.activation, np.array(losses)


def mixture(n_ch: int, n_freq: int, n_frames: int, seed: int) -> np.ndarray:
    """``(n_ch, n_freq, n_frames)``: as many sources with random frame envelopes, mixed per frequency."""
    rng = np.random.default_rng(seed)
    envelope = 0.1 + rng.gamma(0.5, size=(n_ch, 1, n_frames))
    sources = rng.standard_normal((n_ch, n_freq, n_frames)) * envelope
    mixing = rng.standard_normal((n_freq, n_ch, n_ch)) + 1j * rng.standard_normal(
        (n_freq, n_ch, n_ch)
    )
    return np.einsum("fij,jft->ift", mixing, sources + 0j)


@pytest.mark.parametrize("n_ch", [2, 3, 4])
@pytest.mark.parametrize("rule", sorted(UPDATES))
@pytest.mark.parametrize("normalize", [True, False])
def test_compiled_iterations_equal_the_numpy_reference(n_ch, rule, normalize):
    obs = mixture(n_ch, 33, 40, seed=n_ch)
    config = ILRMAConfig(n_basis=3, n_iter=6, update=rule, normalize=normalize)
    demix, basis, activation, losses = numpy_ilrma(obs, config, seed=7)
    result = run(obs, config, seed=7)
    np.testing.assert_allclose(result.demix, demix, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(result.basis, basis, rtol=1e-8)
    np.testing.assert_allclose(result.activation, activation, rtol=1e-8)
    np.testing.assert_allclose(result.loss, losses, rtol=1e-9)


@pytest.mark.parametrize("rule", sorted(UPDATES))
def test_iva_start_never_raises_its_loss(rule):
    obs = mixture(3, 33, 60, seed=1)
    _, losses = iva_start(obs, 15, rule)
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))


def test_a_singular_frequency_keeps_its_demixing_matrix():
    obs = mixture(2, 17, 30, seed=2)
    obs[:, 5] = 0.0  # silent bin: singular covariances there
    result = run(obs, ILRMAConfig(n_iter=5), seed=0)
    assert np.isfinite(result.demix).all() and np.isfinite(result.loss).all()
