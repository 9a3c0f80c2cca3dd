"""Joint dereverberation and separation (ilrma_cli.engine.taps): taps = 0 is today's engine,
the loss never rises, a synthetic reverberant mixture is dereverberated, degenerate inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ilrma_cli.engine import ILRMAConfig, project_back, run
from ilrma_cli.engine import reference as ref_loop
from ilrma_cli.engine.init import identity
from ilrma_cli.engine.observation import Observation, unit_power_features
from ilrma_cli.engine.source_models import make_source_model
from ilrma_cli.engine.spatial import UPDATES
from ilrma_cli.engine.taps import (
    TAPS_UPDATES,
    taps_observation,
    taps_rule,
    update_ip_outputs,
    update_tap_columns,
)
from ilrma_cli.memory import engine_bytes
from ilrma_cli.pipeline import SeparationSettings, separate
from ilrma_cli.stft import StftConfig, istft


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def reverberant(n_ch: int, n_freq: int = 24, n_frames: int = 300, length: int = 8, seed: int = 0):
    """A convolutive mixture in the STFT domain: ``(x (n_ch, F, T), direct part at mic 0 (n_ch, F, T))``.

    Sources with low-rank on/off variances; each source-to-mic filter spans ``length``
    frames (longer than one hop) with an exponentially decaying random response.
    """
    rng = np.random.default_rng(seed)
    var = rng.gamma(1.0, 1.0, (n_ch, n_freq, 2)) @ rng.gamma(0.3, 1.0, (n_ch, 2, n_frames))
    noise = rng.standard_normal(var.shape) + 1j * rng.standard_normal(var.shape)
    sources = np.sqrt(var / 2) * noise
    shape = (n_ch, n_ch, n_freq, length)
    filters = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    filters *= np.exp(-np.arange(length) / 3.0)
    mix = np.zeros((n_ch, n_freq, n_frames), dtype=complex)
    for lag in range(length):
        mix[:, :, lag:] += np.einsum(
            "mnf,nft->mft", filters[..., lag], sources[:, :, : n_frames - lag]
        )
    return mix, filters[0, :, :, 0, None] * sources


def best_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean SDR (dB) of ``estimate`` against ``reference`` (both ``(n, F, T)``), best permutation."""
    scores = []
    for perm in itertools.permutations(range(len(reference))):
        errors = [
            np.sum(np.abs(r - e) ** 2) for r, e in zip(reference, estimate[list(perm)], strict=True)
        ]
        powers = [np.sum(np.abs(r) ** 2) for r in reference]
        scores.append(np.mean(10 * np.log10(np.divide(powers, errors))))
    return float(max(scores))


@pytest.mark.parametrize("update", ["ip", "iss"])
def test_zero_taps_gives_todays_numbers_on_both_backends(update):
    mix, _ = reverberant(2, n_frames=120)
    for backend in ("compiled", "reference"):
        base = ILRMAConfig(n_iter=8, iva_iter=3, update=update)
        today = run(mix, base, seed=3, backend=backend)
        zero = run(
            mix,
            ILRMAConfig(n_iter=8, iva_iter=3, update=update, taps=0, delay=3),
            seed=3,
            backend=backend,
        )
        assert zero.backend == backend and zero.filters is None
        np.testing.assert_array_equal(zero.separated, today.separated)
        np.testing.assert_array_equal(zero.demix, today.demix)
        np.testing.assert_array_equal(zero.loss, today.loss)


def test_stacked_observation_without_taps_is_the_plain_one():
    """The stacked frames with no past reproduce the feature-based loop (other arithmetic)."""
    mix, _ = reverberant(3, n_frames=150)
    results = []
    for observation in (
        Observation(unit_power_features(mix)[0]),
        taps_observation(mix, mix, 0, 2)[0],
    ):
        demix = identity(mix.shape[1], 3, 3)
        model = make_source_model(
            ILRMAConfig(), 3, mix.shape[1], mix.shape[2], np.random.default_rng(0), 1e-12, None
        )
        losses, _ = ref_loop.iterate(
            observation, demix, model, "ip", 10, normalize=True, record_loss=True, eps=1e-12
        )
        results.append((demix, np.asarray(losses)))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-9)


@pytest.mark.parametrize(
    ("n_ch", "update", "model"),
    [
        (2, "ip", "gauss"),
        (2, "iss", "gauss"),
        (2, "ip2", "gauss"),
        (3, "ip", "gauss"),
        (3, "iss", "gauss"),
        (3, "ip2", "gauss"),
        (2, "iss", "t"),
        (3, "ip", "partition"),
    ],
)
def test_loss_never_rises(n_ch, update, model):
    mix, _ = reverberant(n_ch, n_frames=200, seed=n_ch)
    config = ILRMAConfig(n_iter=25, iva_iter=0, update=update, model=model, taps=3, delay=1)
    result = run(mix, config, seed=1)
    backend = "compiled" if model == "gauss" else "reference"
    assert result.backend == backend and result.filters.shape == (24, n_ch, 3 * n_ch)
    steps = np.diff(result.loss)
    assert np.all(steps <= 1e-9 * np.abs(result.loss[:-1])), steps.max()
    assert result.loss[-1] < result.loss[0]


def test_iva_t_warm_start_loss_never_rises():
    mix, _ = reverberant(2, n_frames=200)
    observation, _ = taps_observation(mix, mix, 3, 2)
    demix = np.zeros((24, 2, observation.width), dtype=complex)
    demix[:, :, :2] = np.eye(2)
    from ilrma_cli.engine.init import iva_reference

    losses = np.asarray(iva_reference(observation, demix, "iss", 20, 1e-12, record_loss=True))
    assert np.all(np.diff(losses) <= 1e-9 * np.abs(losses[:-1]))


@pytest.mark.parametrize("n_ch", [2, 3])
def test_a_reverberant_mixture_is_dereverberated(n_ch):
    """Against the direct part at mic 0, taps beat no taps by well over 1 dB."""
    mix, direct = reverberant(n_ch, n_frames=300, seed=10 + n_ch)
    sdr = {}
    for taps in (0, 4):
        config = ILRMAConfig(n_basis=2, n_iter=40, iva_iter=10, update="iss", taps=taps, delay=1)
        result = run(mix, config, seed=0)
        sdr[taps] = best_sdr(direct, project_back(result.separated, result.demix, 0))
    assert sdr[4] > sdr[0] + 2.0, sdr


def test_filters_and_demix_rebuild_the_outputs_with_fewer_sources_than_mics():
    mix, _ = reverberant(3, n_frames=100)
    config = ILRMAConfig(n_iter=5, iva_iter=2, taps=2, delay=2)
    result = run(mix, config, n_sources=2)
    assert result.demix.shape == (24, 2, 3) and result.filters.shape == (24, 2, 6)
    past = np.zeros((24, 6, 100), dtype=complex)
    for lag in range(2):
        past[:, 3 * lag : 3 * lag + 3, 2 + lag :] = mix[:, :, : 100 - 2 - lag].transpose(1, 0, 2)
    rebuilt = result.demix @ mix.transpose(1, 0, 2) - result.filters @ past
    np.testing.assert_allclose(result.separated, rebuilt.transpose(1, 0, 2), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("case", ["silent_stretch", "identical_channels", "shorter_than_delay"])
def test_degenerate_inputs_stay_finite(case):
    mix, _ = reverberant(2, n_frames=80)
    if case == "silent_stretch":
        mix[:, :, 20:60] = 0
    elif case == "identical_channels":
        mix[1] = mix[0]
    else:
        mix = mix[:, :, :2]
    for update in ("ip", "iss", "ip2"):
        result = run(mix, ILRMAConfig(n_iter=10, iva_iter=3, update=update, taps=3, delay=2))
        assert np.isfinite(result.separated).all() and np.isfinite(result.filters).all()
        assert np.isfinite(result.loss).all() or case == "identical_channels"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="taps"):
        ILRMAConfig(taps=-1)
    with pytest.raises(ValueError, match="delay"):
        ILRMAConfig(delay=0)
    mix, _ = reverberant(2, n_frames=40)
    with pytest.raises(ValueError, match="compiled"):
        run(mix, ILRMAConfig(taps=2, model="t"), backend="compiled")
    with pytest.raises(ValueError, match="full-rank"):
        ILRMAConfig(taps=2, spatial="fullrank")


def test_memory_estimate_counts_the_stacked_statistics():
    """The stacked frames (complex128, K = m (1 + L) rows) replace the m^2 real features."""
    args = (2, 513, 700, 4, "double")
    base = engine_bytes(*args, backend="reference")
    assert engine_bytes(*args, backend="reference", taps=0) == base
    stacked, features = 513 * 700 * (2 + 5 * 2) * 16, 513 * 700 * 4 * 8
    assert engine_bytes(*args, backend="reference", taps=5) - base >= stacked - features
    assert engine_bytes(*args, backend="reference", taps=10) > engine_bytes(
        *args, backend="reference", taps=5
    )


def test_the_pipeline_outputs_the_dereverberated_sources_projected_back():
    """``separate`` with taps: its signals are the dereverberated outputs scaled by ``W^{-1}``."""
    rng = np.random.default_rng(5)
    n_samples = 8000
    dry = rng.standard_normal((2, n_samples)) * (rng.random((2, n_samples // 400, 1)) ** 2).repeat(
        400, axis=1
    ).reshape(2, n_samples)
    decay = rng.standard_normal((2, 2, 600)) * np.exp(-np.arange(600) / 150)
    mix = np.stack(
        [sum(np.convolve(dry[n], decay[m, n])[:n_samples] for n in range(2)) for m in range(2)]
    )
    config = StftConfig(256, 64, "hann")
    settings = SeparationSettings(
        stft=config, ilrma=ILRMAConfig(n_iter=5, iva_iter=2, taps=3, delay=2), restarts=1
    )
    separation = separate(mix, settings)
    result = separation.result
    assert result.filters is not None and result.filters.shape == (129, 2, 6)
    expected = istft(project_back(result.separated, result.demix, 0), n_samples, config)
    np.testing.assert_allclose(separation.sources, expected, rtol=1e-7, atol=1e-9)
    assert separation.settings.to_dict()["taps"] == 3


def _extended_state(n_ch: int = 2, taps: int = 3):
    """Random extended demixing matrices and the covariances of a reverberant mixture."""
    mix, _ = reverberant(n_ch, n_frames=150, seed=7)
    observation, _ = taps_observation(mix, mix, taps, 1)
    rng = np.random.default_rng(2)
    shape = (mix.shape[1], n_ch, observation.width)
    demix = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    weights = rng.gamma(1.0, 1.0, (n_ch,) + mix.shape[1:])
    return demix, observation.weighted_covariances(weights)


def test_ip_on_extended_rows_is_the_joint_optimum_of_separation_and_filter():
    """ILRMA-T's IP: ``U_n p_n`` is zero on the tap entries and ``p_n^H U_n p_n = 1``."""
    demix, cov = _extended_state()
    UPDATES["ip"](demix, cov)
    u_p = np.einsum("fnij,fnj->fni", cov, demix.conj())
    np.testing.assert_allclose(u_p[..., 2:], 0, atol=1e-8 * np.abs(u_p).max())
    np.testing.assert_allclose(np.einsum("fni,fni->fn", demix, u_p).real, 1.0, rtol=1e-8)


def test_t_iss_tap_step_is_the_weighted_least_squares_solution_of_its_column():
    """After the tap steps, the last tap column's coefficient cannot lower ``p^H U p``."""
    demix, cov = _extended_state()
    update_tap_columns(demix, cov)
    row_cov = np.einsum("fnk,fnkj->fnj", demix, cov)
    np.testing.assert_allclose(row_cov[..., -1], 0, atol=1e-9 * np.abs(row_cov).max())


def test_ip_on_the_outputs_is_ip_itself_without_taps():
    rng = np.random.default_rng(5)
    shape = (7, 3, 3)
    demix = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    frames = rng.standard_normal((7, 3, 40)) + 1j * rng.standard_normal((7, 3, 40))
    weights = rng.gamma(1.0, 1.0, (3, 7, 40))
    cov = np.einsum("fit,nft,fjt->fnij", frames, weights, frames.conj()) / 40
    by_ip, on_outputs = demix.copy(), demix.copy()
    UPDATES["ip"](by_ip, cov)
    update_ip_outputs(on_outputs, cov)
    np.testing.assert_allclose(on_outputs, by_ip, rtol=1e-9, atol=1e-12)


def test_ip_on_the_outputs_is_the_optimum_over_the_mixing_of_the_rows():
    """After the sweep the last row is IP's optimum over A: ``P U_n p_n^H = e_n``."""
    demix, cov = _extended_state()
    before = demix.copy()
    update_ip_outputs(demix, cov)
    last = demix.shape[1] - 1
    u_p = np.einsum("fik,fkl,fl->fi", demix, cov[:, last], demix[:, last].conj())
    np.testing.assert_allclose(u_p, np.broadcast_to(np.eye(demix.shape[1])[last], u_p.shape),
                               atol=1e-8)  # fmt: skip
    # the rows were mixed, not changed otherwise: the same span, filters included
    mixing = np.linalg.lstsq(before[0].T, demix[0].T, rcond=None)[0]
    np.testing.assert_allclose(before[0].T @ mixing, demix[0].T, atol=1e-9)


def test_taps_rule_refreshes_the_filters_every_r_iterations():
    joint, between = TAPS_UPDATES["ip"], update_ip_outputs
    assert [taps_rule("ip", 3, it) for it in range(1, 8)] == [joint, *[between] * 2] * 2 + [joint]
    assert {taps_rule("ip", 1, it) for it in range(1, 5)} == {joint}
    assert taps_rule("iss", 3, 2) is TAPS_UPDATES["iss"]
    assert taps_rule("ip2", 3, 2) is TAPS_UPDATES["ip2"]
