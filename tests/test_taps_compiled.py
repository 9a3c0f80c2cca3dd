"""The compiled taps backend (ilrma_cli.engine.taps_compiled) against the reference loop on the
stacked observation, from the same initial state; its loss never rises; its memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ilrma_cli.engine import RULES, ILRMAConfig, InitialState, choose_backend, run
from ilrma_cli.engine.init import iva_reference
from ilrma_cli.engine.taps import extend, taps_observation
from ilrma_cli.engine.taps_compiled import iterate_iva, taps_frames
from ilrma_cli.memory import ENGINE_SCRATCH, engine_bytes
from tests.test_taps import reverberant


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def assert_same_run(compiled, reference, rtol: float = 1e-8) -> None:
    assert (compiled.backend, reference.backend) == ("compiled", "reference")
    scale = np.abs(reference.filters).max()
    np.testing.assert_allclose(compiled.demix, reference.demix, rtol=rtol, atol=rtol * 1e-2)
    np.testing.assert_allclose(compiled.filters, reference.filters, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(compiled.basis, reference.basis, rtol=rtol)
    np.testing.assert_allclose(compiled.activation, reference.activation, rtol=rtol)
    np.testing.assert_allclose(compiled.loss, reference.loss, rtol=rtol * 1e-1)
    peak = np.abs(reference.separated).max()
    np.testing.assert_allclose(compiled.separated, reference.separated, atol=rtol * peak)


# (mics, sources, taps, delay)
CASES = [(2, 2, 1, 1), (2, 2, 3, 2), (3, 3, 2, 1), (4, 4, 1, 2), (4, 2, 2, 2), (4, 3, 3, 1)]


@pytest.mark.parametrize(("n_ch", "n_src", "taps", "delay"), CASES)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(("normalize", "tap_refresh"), [(True, 1), (False, 1), (True, 3)])
def test_compiled_taps_equal_the_reference_loop(
    n_ch, n_src, taps, delay, rule, normalize, tap_refresh
):
    """With the IVA-T warm start, so both of its sweeps are compared too; ``tap_refresh`` 3
    puts two iterations of IP on the outputs between the joint ones (``ip`` only)."""
    mix, _ = reverberant(n_ch, n_freq=9, n_frames=60, seed=n_ch + taps)
    config = ILRMAConfig(
        n_basis=3, n_iter=6, iva_iter=3, update=rule, normalize=normalize, taps=taps, delay=delay,
        tap_refresh=tap_refresh,
    )  # fmt: skip
    reference = run(mix, config, seed=4, n_sources=n_src, backend="reference")
    assert_same_run(run(mix, config, seed=4, n_sources=n_src), reference)


@pytest.mark.parametrize("rule", RULES)
def test_both_backends_continue_from_a_given_state(rule):
    mix, _ = reverberant(3, n_freq=9, n_frames=60, seed=1)
    config = ILRMAConfig(n_basis=2, n_iter=4, update=rule, taps=2, delay=2)
    start = run(mix, config, seed=1)
    given = InitialState(demix=start.demix, basis=start.basis, activation=start.activation)
    compiled = run(mix, config, seed=9, init=given)
    assert_same_run(compiled, run(mix, config, seed=9, init=given, backend="reference"))


@pytest.mark.parametrize("rule", RULES)
def test_iva_t_warm_start_equals_the_reference_one(rule):
    mix, _ = reverberant(3, n_freq=9, n_frames=80, seed=3)
    width = 3 * (1 + 2)
    start = extend(np.tile(np.eye(3, dtype=complex), (9, 1, 1)), width)
    reference, compiled = start.copy(), start.copy()
    iva_reference(taps_observation(mix, mix, 2, 1)[0], reference, rule, 8, 1e-12, False)
    iterate_iva(taps_frames(mix, mix, 2, 1)[0], compiled, rule, 8, 1e-12)
    np.testing.assert_allclose(compiled, reference, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("n_ch", "n_src"), [(2, 2), (4, 2), (4, 4)])
@pytest.mark.parametrize(("rule", "tap_refresh"), [*((rule, 1) for rule in RULES), ("ip", 2)])
def test_loss_never_rises(n_ch, n_src, rule, tap_refresh):
    mix, _ = reverberant(n_ch, n_frames=200, seed=n_ch)
    config = ILRMAConfig(
        n_iter=25, iva_iter=0, update=rule, taps=2, delay=2, tap_refresh=tap_refresh
    )
    result = run(mix, config, seed=1, n_sources=n_src)
    assert result.backend == "compiled"
    steps = np.diff(result.loss)
    assert np.all(steps <= 1e-9 * np.abs(result.loss[:-1])), steps.max()
    assert result.loss[-1] < result.loss[0]


def test_taps_pick_the_compiled_backend_for_the_gauss_model_only():
    for rule in RULES:
        assert choose_backend(ILRMAConfig(taps=2, update=rule)) == "compiled"
    assert choose_backend(ILRMAConfig(taps=2, model="t")) == "reference"


def test_the_frames_are_stored_once():
    """Without PCA the mics are the current frame and the past: one copy, whatever the taps."""
    mix, _ = reverberant(3, n_freq=9, n_frames=50)
    frames, mean_power = taps_frames(mix, mix, 3, 2)
    assert frames.planes.shape == (3, 9, 2, 50) and frames.width == 12
    np.testing.assert_allclose(
        frames.planes[:, :, 0] + 1j * frames.planes[:, :, 1], mix / np.sqrt(mean_power)
    )
    reduced = mix[:2] * 1.0
    assert taps_frames(reduced, mix, 3, 2)[0].planes.shape == (5, 9, 2, 50)


def test_memory_estimate_counts_the_compiled_buffers():
    """The traced peak of a compiled run with taps stays under the estimate's engine arrays;
    the estimate does not grow with the taps and is far below the reference loop's."""
    n_ch, n_freq, n_frames = 2, 65, 3000
    mix, _ = reverberant(n_ch, n_freq=n_freq, n_frames=n_frames, length=4)
    config = ILRMAConfig(n_iter=2, taps=3)
    run(mix[:, :9, :20], config)  # compiled and cached before the trace
    tracemalloc.start()
    run(mix, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = engine_bytes(n_ch, n_freq, n_frames, 2, "double", "compiled", taps=3)
    engine_arrays = estimate - ENGINE_SCRATCH - mix.nbytes  # the spectrogram was not traced
    assert 0.8 * engine_arrays <= peak <= engine_arrays, (peak, engine_arrays)
    assert engine_bytes(n_ch, n_freq, n_frames, 2, "double", "compiled", taps=10) == estimate
    reference = engine_bytes(n_ch, n_freq, n_frames, 2, "double", "reference", taps=3)
    assert reference - ENGINE_SCRATCH > 2 * (estimate - ENGINE_SCRATCH)
