"""The fast paths of the engine equal the direct formulas they replace."""

import numpy as np
import pytest

from ilrma_cli.engine import ILRMAConfig, linalg, run
from ilrma_cli.engine.observation import (
    demix_apply,
    outer_features,
    output_power,
    power_coefficients,
    weighted_covariances,
)
from ilrma_cli.engine.source_models import sum_log
from ilrma_cli.engine.spatial import update_iss


def complex_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_small_inverse_columns_and_determinant_match_lapack(m):
    a = complex_normal(np.random.default_rng(m), (50, m, m))
    np.testing.assert_allclose(linalg.det(a), np.linalg.det(a), rtol=1e-12)
    for j in range(m):
        np.testing.assert_allclose(
            linalg.inv_column(a, j), np.linalg.inv(a)[..., j], rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(("m", "k", "p"), [(2, 2, 2), (3, 3, 3), (3, 3, 2), (2, 4, 3)])
def test_small_matmul_matches_numpy(m, k, p):
    rng = np.random.default_rng(m * k * p)
    a, b = complex_normal(rng, (7, m, k)), complex_normal(rng, (7, k, p))
    np.testing.assert_allclose(linalg.matmul(a, b), a @ b, rtol=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_singular_matrices_give_non_finite_values_not_errors(m):
    a = np.ones((4, m, m), dtype=complex)
    assert not np.isfinite(linalg.inv_column(a, 0)).any()


@pytest.mark.parametrize("m", [2, 3, 4])
def test_small_cholesky_and_triangular_solves_match_lapack(m):
    rng = np.random.default_rng(40 + m)
    g = complex_normal(rng, (50, m, m))
    a = g @ g.conj().swapaxes(-1, -2)
    b = complex_normal(rng, (50, m, 2))
    low = linalg.cholesky(a)
    np.testing.assert_allclose(low, np.linalg.cholesky(a), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(linalg.solve_lower(low, b), np.linalg.solve(low, b), rtol=1e-10)
    np.testing.assert_allclose(
        linalg.solve_lower(low, b, adjoint=True),
        np.linalg.solve(low.conj().swapaxes(-1, -2), b),
        rtol=1e-10,
    )


def test_cholesky_of_an_indefinite_matrix_is_nan_not_an_error():
    a = np.array([[[1.0, 2.0], [2.0, 1.0]], [[2.0, 1.0], [1.0, 2.0]]], dtype=complex)
    low = linalg.cholesky(a)
    assert np.isnan(low[0, 1, 1])
    np.testing.assert_allclose(low[1], np.linalg.cholesky(a[1]))


@pytest.mark.parametrize("m", [2, 3])
def test_features_give_the_output_power_and_the_weighted_covariances(m):
    rng = np.random.default_rng(10 + m)
    n_freq, n_frames = 300, 40  # more frequencies than one block
    obs = complex_normal(rng, (m, n_freq, n_frames))
    demix = complex_normal(rng, (n_freq, m, m))
    inv_var = rng.random((m, n_freq, n_frames)) + 0.1
    feats = outer_features(obs)

    y = np.einsum("fnm,mft->nft", demix, obs)
    power = output_power(power_coefficients(demix), feats, np.empty((m, n_freq, n_frames)))
    np.testing.assert_allclose(power, np.abs(y) ** 2, rtol=1e-10)
    np.testing.assert_allclose(demix_apply(demix, obs, np.complex128), y, rtol=1e-12)

    direct = np.einsum("nft,ift,jft->fnij", inv_var, obs, obs.conj()) / n_frames
    cov = weighted_covariances(feats, inv_var)
    np.testing.assert_allclose(cov, direct, rtol=1e-8, atol=1e-12)

    # Single-precision weights and powers go through the float64 features block by block.
    power32 = output_power(power_coefficients(demix), feats, np.empty(power.shape, np.float32))
    np.testing.assert_allclose(power32, power, rtol=1e-6)
    cov32 = weighted_covariances(feats, inv_var.astype(np.float32))
    np.testing.assert_allclose(cov32, direct, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3])
def test_iss_on_covariances_equals_iss_on_signals(m):
    """Scheibler & Ono's rule written on the separated signals, as in the first engine."""
    rng = np.random.default_rng(20 + m)
    n_freq, n_frames = 9, 200
    obs = complex_normal(rng, (m, n_freq, n_frames))
    demix = complex_normal(rng, (n_freq, m, m))
    inv_var = rng.random((m, n_freq, n_frames)) + 0.1
    expected = demix.copy()
    out = np.einsum("fnm,mft->fnt", expected, obs)
    weights = inv_var.transpose(1, 0, 2)
    for k in range(m):
        y_k = out[:, k : k + 1, :]
        denom = ((y_k.real**2 + y_k.imag**2) * weights).sum(axis=-1)
        v = np.einsum("fnt,fnt->fn", out * weights, y_k.conj()) / denom
        v[:, k] = 1.0 - 1.0 / np.sqrt(denom[:, k] / n_frames)
        out -= v[:, :, None] * y_k
        expected -= v[:, :, None] * expected[:, k : k + 1, :]

    cov = weighted_covariances(outer_features(obs), inv_var)
    update_iss(demix, cov)
    np.testing.assert_allclose(demix, expected, rtol=1e-7)


def mean_sir_db(demix: np.ndarray, mixing: np.ndarray) -> float:
    """Mean over frequencies of the SIR of the global system, best of the two permutations."""
    gsys = np.abs(demix @ mixing) ** 2  # (n_freq, 2, 2)
    straight = np.trace(gsys, axis1=1, axis2=2)
    crossed = gsys[:, 0, 1] + gsys[:, 1, 0]
    return float(
        np.mean(10 * np.log10(np.maximum(straight, crossed) / np.minimum(straight, crossed)))
    )


@pytest.mark.parametrize("rule", ["ip", "iss", "ip2"])
def test_single_precision_separates_as_well_as_double(rule):
    rng = np.random.default_rng(30)
    sources = complex_normal(rng, (2, 129, 200)) * rng.random((2, 1, 200)) ** 2
    mixing = np.array([[1.0, 0.6], [0.5, 1.0]])
    obs = np.einsum("mn,nft->mft", mixing, sources)
    double = run(obs, ILRMAConfig(n_iter=30, update=rule), seed=0)
    single = run(obs, ILRMAConfig(n_iter=30, update=rule, precision="single"), seed=0)
    assert single.separated.dtype == np.complex64
    assert double.separated.dtype == np.complex128
    np.testing.assert_allclose(single.loss[:3], double.loss[:3], rtol=1e-5)
    # float32 rounding caps the interference rejection near 80 dB (double reaches ~95 dB).
    assert mean_sir_db(double.demix, mixing) > 60
    assert mean_sir_db(single.demix, mixing) > 60


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError) as err:
        ILRMAConfig(precision="half")
    assert str(err.value) == "unknown precision 'half'; choose one of single, double"


@pytest.mark.parametrize("size", [1, 15, 16, 1000, 16003])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grouped_sum_of_logarithms_equals_the_direct_sum(size, dtype):
    values = np.maximum(np.random.default_rng(size).random(size) ** 6 * 1e3, 1e-12).astype(dtype)
    logs = np.log(values.astype(np.float64))
    # float32 logarithms are exact to about 1e-7 each.
    tolerance = (1e-12 if dtype == np.float64 else 1e-6) * np.sum(np.abs(logs))
    assert sum_log(values) == pytest.approx(float(np.sum(logs)), abs=tolerance)


@pytest.mark.parametrize("extreme", [1e300, 1e-300])
def test_grouped_sum_of_logarithms_falls_back_outside_the_float_range(extreme):
    values = np.full(1003, extreme)
    assert sum_log(values) == pytest.approx(1003 * np.log(extreme), rel=1e-12)
