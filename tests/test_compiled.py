"""The compiled backend against the reference loop, from the same initial state."""

import numpy as np
import pytest

from ilrma_cli.engine import RULES, ILRMAConfig, InitialState, run
from ilrma_cli.engine.init import iva_start


def mixture(n_ch: int, n_freq: int, n_frames: int, seed: int) -> np.ndarray:
    """``(n_ch, n_freq, n_frames)``: as many sources with random frame envelopes, mixed per frequency."""
    rng = np.random.default_rng(seed)
    envelope = 0.1 + rng.gamma(0.5, size=(n_ch, 1, n_frames))
    sources = rng.standard_normal((n_ch, n_freq, n_frames)) * envelope
    mixing = rng.standard_normal((n_freq, n_ch, n_ch)) + 1j * rng.standard_normal(
        (n_freq, n_ch, n_ch)
    )
    return np.einsum("fij,jft->ift", mixing, sources + 0j)


def assert_same_run(compiled, reference) -> None:
    assert (compiled.backend, reference.backend) == ("compiled", "reference")
    np.testing.assert_allclose(compiled.demix, reference.demix, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(compiled.basis, reference.basis, rtol=1e-8)
    np.testing.assert_allclose(compiled.activation, reference.activation, rtol=1e-8)
    np.testing.assert_allclose(compiled.loss, reference.loss, rtol=1e-9)


@pytest.mark.parametrize("n_ch", [2, 3, 4])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("normalize", [True, False])
def test_compiled_iterations_equal_the_reference_loop(n_ch, rule, normalize):
    obs = mixture(n_ch, 33, 40, seed=n_ch)
    config = ILRMAConfig(n_basis=3, n_iter=6, update=rule, normalize=normalize)
    reference = run(obs, config, seed=7, backend="reference")
    assert_same_run(run(obs, config, seed=7, backend="compiled"), reference)


@pytest.mark.parametrize("n_ch", [2, 3])
@pytest.mark.parametrize("rule", RULES)
def test_compiled_iva_start_equals_the_reference_one(n_ch, rule):
    obs = mixture(n_ch, 33, 50, seed=10 + n_ch)
    config = ILRMAConfig(n_iter=0, update=rule, iva_iter=8, record_loss=False)
    compiled = run(obs, config, seed=0, backend="compiled")
    demix, _ = iva_start(obs, 8, rule)
    np.testing.assert_allclose(compiled.demix, demix, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rule", RULES)
def test_both_backends_continue_from_a_given_state(rule):
    obs = mixture(3, 33, 40, seed=5)
    config = ILRMAConfig(n_basis=2, n_iter=4, update=rule)
    start = run(obs, config, seed=1)
    given = InitialState(demix=start.demix, basis=start.basis, activation=start.activation)
    compiled = run(obs, config, seed=99, init=given, backend="compiled")
    assert_same_run(compiled, run(obs, config, seed=99, init=given, backend="reference"))
    # A result is a state in the caller's scale: continuing it equals running longer.
    longer = run(obs, ILRMAConfig(n_basis=2, n_iter=8, update=rule), seed=1)
    np.testing.assert_allclose(compiled.demix, longer.demix, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_iva_start_never_raises_its_loss(rule):
    obs = mixture(3, 33, 60, seed=1)
    _, losses = iva_start(obs, 15, rule)
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))


def test_a_singular_frequency_keeps_its_demixing_matrix():
    obs = mixture(2, 17, 30, seed=2)
    obs[:, 5] = 0.0  # silent bin: singular covariances there
    result = run(obs, ILRMAConfig(n_iter=5), seed=0)
    assert np.isfinite(result.demix).all() and np.isfinite(result.loss).all()


def test_the_compiled_backend_refuses_models_it_does_not_run():
    with pytest.raises(ValueError, match="compiled backend"):
        run(mixture(2, 9, 20, seed=0), ILRMAConfig(model="t"), backend="compiled")
