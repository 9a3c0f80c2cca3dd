from dataclasses import replace

import numpy as np
import pytest

from ilrma_cli.engine import UPDATES, ILRMAConfig, project_back, run
from ilrma_cli.engine.source_models import GaussNMF

RULES = sorted(UPDATES)


def low_rank_sources(n_sources: int, n_freq: int, n_frames: int, seed: int) -> np.ndarray:
    """Complex Gaussian sources whose variances are rank-2 NMF products."""
    rng = np.random.default_rng(seed)
    model = GaussNMF.random(n_sources, n_freq, n_frames, 2, rng, 1e-3)
    var = model.basis @ model.activation**4  # sparse-in-time activations
    noise = rng.standard_normal(var.shape) + 1j * rng.standard_normal(var.shape)
    return np.sqrt(var / 2) * noise


def sir_db(separated: np.ndarray, demix: np.ndarray, mixing: np.ndarray) -> float:
    """Worst-source SIR of the global system ``demix @ mixing`` (per frequency), best permutation."""
    gsys = np.abs(demix @ mixing) ** 2  # (F, N, N): output n from source k
    total = gsys.sum(axis=0)
    n = total.shape[0]
    perms = [np.arange(n)]
    from itertools import permutations

    perms = [np.array(p) for p in permutations(range(n))]
    best = -np.inf
    for p in perms:
        target = np.array([total[i, p[i]] for i in range(n)])
        interf = total.sum(axis=1) - target
        best = max(best, float(np.min(10 * np.log10(target / interf))))
    return best


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n_sources", [2, 3])
def test_instantaneous_low_rank_mixture_is_separated(rule, n_sources):
    n_freq, n_frames = 64, 400
    sources = low_rank_sources(n_sources, n_freq, n_frames, seed=n_sources)
    rng = np.random.default_rng(10 + n_sources)
    mixing = rng.standard_normal((n_sources, n_sources)) + 0.1 * np.eye(n_sources)
    obs = np.einsum("mn,nft->mft", mixing, sources)
    result = run(obs, ILRMAConfig(n_basis=2, n_iter=60, update=rule), seed=0)
    mixing_f = np.broadcast_to(mixing, (n_freq, n_sources, n_sources))
    assert sir_db(result.separated, result.demix, mixing_f) > 20


@pytest.mark.parametrize("rule", RULES)
def test_loss_never_increases_without_normalisation(rule):
    obs = np.random.default_rng(3).standard_normal((2, 129, 150)) * (1 + 0j)
    obs[0] += 0.5 * obs[1]
    result = run(obs, ILRMAConfig(n_iter=50, update=rule, normalize=False), seed=1)
    assert len(result.loss) == 51
    steps = np.diff(result.loss)
    assert np.all(steps <= 1e-9 * np.abs(result.loss[:-1])), steps.max()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n_sources", [2, 3, 4])
def test_loss_never_increases_on_sparse_sources(rule, n_sources):
    """Sparse sources give the weighted covariances condition numbers of 1e12 and more."""
    n_freq, n_frames = 64, 300
    sources = low_rank_sources(n_sources, n_freq, n_frames, seed=20 + n_sources)
    rng = np.random.default_rng(30 + n_sources)
    mixing = rng.standard_normal((n_sources,) * 2) + 1j * rng.standard_normal((n_sources,) * 2)
    obs = np.einsum("mn,nft->mft", mixing, sources)
    result = run(obs, ILRMAConfig(n_iter=50, update=rule, normalize=False), seed=1)
    steps = np.diff(result.loss)
    assert np.all(steps <= 1e-9 * np.abs(result.loss[:-1])), steps.max()


def test_normalisation_does_not_change_the_loss_value():
    obs = np.random.default_rng(4).standard_normal((2, 65, 80)) + 0j
    a = run(obs, ILRMAConfig(n_iter=1, normalize=True), seed=0)
    b = run(obs, ILRMAConfig(n_iter=1, normalize=False), seed=0)
    assert a.loss[-1] == pytest.approx(b.loss[-1], rel=1e-9)


@pytest.mark.parametrize("rule", RULES)
def test_same_seed_gives_identical_output(rule):
    obs = np.random.default_rng(5).standard_normal((2, 65, 80)) + 0j
    a = run(obs, ILRMAConfig(n_iter=5, update=rule), seed=7)
    b = run(obs, ILRMAConfig(n_iter=5, update=rule), seed=7)
    c = run(obs, ILRMAConfig(n_iter=5, update=rule), seed=8)
    np.testing.assert_array_equal(a.separated, b.separated)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.array_equal(a.separated, c.separated)


def test_separated_equals_demix_times_observation_and_projection_back_sums_to_mixture():
    obs = np.random.default_rng(6).standard_normal((3, 33, 50)) + 1j
    result = run(obs, ILRMAConfig(n_iter=3), seed=0)
    np.testing.assert_allclose(
        result.separated, np.einsum("fnm,mft->nft", result.demix, obs), rtol=1e-9, atol=1e-9
    )
    images = project_back(result.separated, result.demix, ref_mic=None)
    assert images.shape == (3, 3, 33, 50)
    np.testing.assert_allclose(images.sum(axis=0), obs, atol=1e-8)
    at_mic1 = project_back(result.separated, result.demix, ref_mic=1)
    np.testing.assert_allclose(at_mic1, images[:, 1], atol=1e-12)


def test_callback_sees_every_iteration_and_can_stop_early():
    obs = np.random.default_rng(7).standard_normal((2, 17, 40)) + 0j
    seen = []

    def callback(iteration, loss):
        seen.append((iteration, loss))
        return iteration == 4

    result = run(obs, ILRMAConfig(n_iter=10), seed=0, callback=callback)
    assert [it for it, _ in seen] == [1, 2, 3, 4]
    assert result.n_iter == 4
    assert [loss for _, loss in seen] == list(result.loss[1:])


@pytest.mark.parametrize(
    ("backend", "spatial"),
    [("compiled", "rank1"), ("reference", "rank1"), ("compiled", "fullrank")],
)
def test_without_record_loss_only_the_last_loss_is_computed_and_nothing_else_changes(
    backend, spatial
):
    """...but a callback sees the loss of every tenth iteration of each stage too."""
    obs = np.random.default_rng(8).standard_normal((2, 17, 40)) + 0j
    config = ILRMAConfig(n_iter=23, spatial=spatial, fullrank_iter=12, fullrank_basis=2)
    every = run(obs, config, backend=backend)
    seen = []
    last = run(obs, replace(config, record_loss=False), backend=backend,
               callback=lambda it, loss: seen.append((it, loss)))  # fmt: skip
    np.testing.assert_array_equal(last.separated, every.separated)
    np.testing.assert_array_equal(last.demix, every.demix)
    np.testing.assert_array_equal(last.activation, every.activation)
    stages = [every.loss[23]] + ([every.loss[-1]] if spatial == "fullrank" else [])
    np.testing.assert_allclose(last.loss, stages, rtol=1e-12)
    assert [it for it, _ in seen] == list(range(1, every.n_iter + 1))
    shown = {it: loss for it, loss in seen if not np.isnan(loss)}
    assert list(shown) == ([10, 20, 23, 33, 35] if spatial == "fullrank" else [10, 20, 23])
    np.testing.assert_allclose(list(shown.values()), every.loss[list(shown)], rtol=1e-12)
    quiet = run(obs, replace(config, record_loss=False), backend=backend)  # no callback
    np.testing.assert_array_equal(quiet.loss, last.loss)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("case", ["silence", "silent_channel", "identical_channels", "one_frame"])
def test_degenerate_inputs_stay_finite(rule, case):
    rng = np.random.default_rng(9)
    obs = rng.standard_normal((2, 33, 30)) + 1j * rng.standard_normal((2, 33, 30))
    if case == "silence":
        obs[:] = 0
    elif case == "silent_channel":
        obs[1] = 0
    elif case == "identical_channels":
        obs[1] = obs[0]
    else:
        obs = obs[:, :, :1]
    result = run(obs, ILRMAConfig(n_iter=20, update=rule), seed=0)
    assert np.all(np.isfinite(result.separated))
    assert np.all(np.isfinite(result.loss))
    assert np.all(np.isfinite(project_back(result.separated, result.demix, ref_mic=0)))


@pytest.mark.parametrize(
    ("obs_shape", "kwargs", "message"),
    [
        ((2, 10), {}, r"obs must have shape \(n_channels, n_freq, n_frames\), got \(2, 10\)"),
        ((1, 10, 10), {}, "ILRMA needs at least 2 channels, got 1"),
        ((2, 10, 0), {}, r"obs has no time-frequency bins: shape \(2, 10, 0\)"),
        (
            (2, 10, 10),
            {"n_sources": 3},
            r"n_sources must be between 2 and n_channels \(2\) for determined ILRMA, or above "
            r"with the full-rank model, got 3",
        ),
    ],
)
def test_bad_observations_are_refused(obs_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(np.ones(obs_shape, dtype=complex), ILRMAConfig(n_iter=1), **kwargs)


def test_non_finite_observation_is_refused():
    obs = np.ones((2, 4, 4), dtype=complex)
    obs[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="obs contains NaN or infinite values"):
        run(obs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_basis": 0}, "n_basis must be an integer >= 1, got 0"),
        ({"n_iter": -1}, "n_iter must be an integer >= 0, got -1"),
        ({"update": "fastica"}, "unknown update 'fastica'; choose one of ip, ip2, iss"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        ILRMAConfig(**kwargs)
    assert str(err.value) == message


def test_ref_mic_out_of_range_is_refused():
    obs = np.ones((2, 4, 4), dtype=complex)
    result = run(obs, ILRMAConfig(n_iter=0))
    with pytest.raises(ValueError, match=r"ref_mic must be in \[0, 1\], got 2"):
        project_back(result.separated, result.demix, ref_mic=2)
