"""Separation scores: equal to mir_eval's bss_eval_sources, fast backend included."""

import itertools
import json
import warnings

import mir_eval.separation
import numpy as np
import pytest
from conftest import DEV_CASES

from ilrma_cli import metrics
from ilrma_cli.engine import ILRMAConfig, project_back, run
from ilrma_cli.metrics import Scores, score
from ilrma_cli.stft import StftConfig, istft, stft

MIR_EVAL_TOLERANCE_DB = 1e-6
FAST_TOLERANCE_DB = 0.01


def bss_eval_sources(references, estimates, compute_permutation=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.separation.bss_eval_sources(references, estimates, compute_permutation)


@pytest.fixture(scope="module")
def separated(dev_case):
    """Per dev case: references, ILRMA estimates (in ILRMA's order) and mixture, all at mic 0."""
    cases = {}
    for case in DEV_CASES:
        mix, refs, _ = dev_case(case)
        config = StftConfig(4096, 2048, "hann")
        result = run(stft(mix, config), ILRMAConfig(n_basis=2, n_iter=30, normalize=True), seed=0)
        estimates = istft(project_back(result.separated, result.demix, 0), mix.shape[1], config)
        cases[case] = refs, estimates, mix[0]
    return cases


def leaky_sources(n_sources: int, n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coloured-noise references, and estimates (same order) that leak the other sources."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n_sources, n_samples + 64))
    kernel = np.exp(-np.arange(64) / rng.uniform(2, 16, size=(n_sources, 1)))
    refs = np.stack(
        [np.convolve(w, k, "valid")[:n_samples] for w, k in zip(white, kernel, strict=True)]
    )
    mixing = np.eye(n_sources) + 0.2 * rng.standard_normal((n_sources, n_sources))
    estimates = mixing @ refs + 0.05 * rng.standard_normal(refs.shape)
    return refs, estimates


def assert_scores_equal(scores, direct, direct_mixture, tolerance):
    """``direct``: bss_eval_sources on the estimates; ``direct_mixture``: on the mixture."""
    sdr, sir, sar, permutation = direct
    np.testing.assert_array_equal(scores.permutation, permutation)
    for name, values in zip(("sdr", "sir", "sar"), (sdr, sir, sar), strict=True):
        np.testing.assert_allclose(getattr(scores, name), values, rtol=0, atol=tolerance)
    for name, values in zip(("sdr_mix", "sir_mix", "sar_mix"), direct_mixture[:3], strict=True):
        np.testing.assert_allclose(getattr(scores, name), values, rtol=0, atol=tolerance)
    np.testing.assert_allclose(scores.sdri, sdr - direct_mixture[0], rtol=0, atol=tolerance)
    np.testing.assert_allclose(scores.siri, sir - direct_mixture[1], rtol=0, atol=tolerance)


@pytest.mark.parametrize("case", DEV_CASES)
def test_fast_backend_matches_mir_eval_on_the_dev_cases(separated, case):
    refs, estimates, mixture = separated[case]
    direct = bss_eval_sources(refs, estimates)
    # the notebook's call; the mixture's SAR (near 149 dB, float32 rounding) is compared too
    direct_mixture = bss_eval_sources(refs, np.stack([mixture, mixture]), False)
    scores = score(refs, estimates, mixture, backend="fast")
    assert_scores_equal(scores, direct, direct_mixture, FAST_TOLERANCE_DB)


def test_mir_eval_backend_equals_a_direct_call(separated):
    refs, estimates, mixture = (x[..., :32000] for x in separated["arctic_2src_rt250"])
    direct = bss_eval_sources(refs, estimates)
    direct_mixture = bss_eval_sources(refs, np.stack([mixture, mixture]))
    scores = score(refs, estimates, mixture, backend="mir_eval")
    assert_scores_equal(scores, direct, direct_mixture, MIR_EVAL_TOLERANCE_DB)


@pytest.mark.parametrize("backend", metrics.BACKENDS)
def test_swapped_estimates_give_the_same_scores_and_the_permutation(separated, backend):
    refs, estimates, _ = separated["arctic_2src_rt250"]
    if backend == "mir_eval":
        refs, estimates = refs[:, :32000], estimates[:, :32000]
    straight = score(refs, estimates, backend=backend)
    swapped = score(refs, estimates[::-1], backend=backend)
    assert sorted(straight.permutation) == [0, 1]
    np.testing.assert_array_equal(swapped.permutation, 1 - straight.permutation)
    for name in ("sdr", "sir", "sar", "si_sdr"):
        np.testing.assert_allclose(getattr(swapped, name), getattr(straight, name), atol=1e-9)


def test_fast_matches_mir_eval_on_three_sources_in_shuffled_order():
    refs, estimates = leaky_sources(3, 4000, seed=1)
    order = np.array([2, 0, 1])
    scores = score(refs, estimates[order])
    np.testing.assert_array_equal(order[scores.permutation], [0, 1, 2])
    # the matched pairs only: mir_eval's own permutation search is tested on the dev cases
    direct = bss_eval_sources(refs, estimates, compute_permutation=False)
    for name, values in zip(("sdr", "sir", "sar"), direct[:3], strict=True):
        np.testing.assert_allclose(getattr(scores, name), values, rtol=0, atol=FAST_TOLERANCE_DB)


def test_fast_keeps_precision_for_near_perfect_estimates():
    """SIR and SDR near 100 dB come from time signals, not from differences of energies."""
    refs, _ = leaky_sources(2, 4000, seed=2)
    noise = 1e-3 * np.random.default_rng(2).standard_normal(refs.shape)
    estimates = refs + 1e-5 * refs[::-1] + noise
    expected = bss_eval_sources(refs, estimates)
    scores = score(refs, estimates)
    assert np.all(scores.sir > 90) and np.all(scores.sar > 50)
    for name, values in zip(("sdr", "sir", "sar"), expected[:3], strict=True):
        np.testing.assert_allclose(getattr(scores, name), values, rtol=0, atol=FAST_TOLERANCE_DB)


def test_mir_eval_backend_pairwise_path_matches_its_own_search(monkeypatch):
    refs, estimates = leaky_sources(2, 4000, seed=3)
    exhaustive = score(refs, estimates[::-1], backend="mir_eval")
    assert exhaustive.permutation.tolist() == [1, 0]
    monkeypatch.setattr(metrics, "EXHAUSTIVE_MAX_SOURCES", 1)
    assigned = score(refs, estimates[::-1], backend="mir_eval")
    np.testing.assert_array_equal(assigned.permutation, exhaustive.permutation)
    for name in ("sdr", "sir", "sar", "si_sdr"):
        np.testing.assert_allclose(getattr(assigned, name), getattr(exhaustive, name), atol=1e-9)


def test_more_than_five_sources_use_the_assignment_solver():
    refs, estimates = leaky_sources(6, 3000, seed=4)
    order = np.random.default_rng(4).permutation(6)
    scores = score(refs, estimates[order])
    np.testing.assert_array_equal(order[scores.permutation], np.arange(6))


@pytest.mark.parametrize("n_sources", [3, 6, 7])
def test_assignment_finds_the_exhaustive_optimum(n_sources):
    rng = np.random.default_rng(n_sources)
    for _ in range(20):
        sir = rng.normal(0, 10, size=(n_sources, n_sources))
        distinct = np.eye(n_sources)  # no identical signals: no ties to break
        permutation = metrics._best_permutation(sir, distinct, distinct)
        best = max(
            np.mean(sir[list(perm), np.arange(n_sources)])
            for perm in itertools.permutations(range(n_sources))
        )
        assert np.mean(sir[permutation, np.arange(n_sources)]) == pytest.approx(best)


def test_si_sdr_of_a_scaled_reference_plus_orthogonal_noise():
    rng = np.random.default_rng(5)
    refs = rng.standard_normal((2, 4000))
    noise = rng.standard_normal((2, 4000))
    noise -= (np.sum(noise * refs, axis=1) / np.sum(refs**2, axis=1))[:, None] * refs
    estimates = 3.0 * refs + noise
    expected = 10 * np.log10(np.sum((3.0 * refs) ** 2, axis=1) / np.sum(noise**2, axis=1))
    np.testing.assert_allclose(score(refs, estimates).si_sdr, expected, rtol=1e-12)


def test_scores_dict_table_and_means(separated):
    refs, estimates, mixture = separated["arctic_2src_rt500"]
    scores = score(refs, estimates, mixture)
    document = json.loads(json.dumps(scores.to_dict(), allow_nan=False))
    assert document["backend"] == "fast"
    assert document["permutation"] == scores.permutation.tolist()
    assert [entry["reference"] for entry in document["sources"]] == [0, 1]
    assert document["sources"][1]["sdri"] == pytest.approx(scores.sdri[1])
    assert document["mean"]["sir"] == pytest.approx(np.mean(scores.sir))
    assert set(document["mean"]) == {*metrics.METRICS, *metrics.MIXTURE_METRICS}
    lines = scores.format_table(["a.wav", "b.wav"], ["x.wav", "y.wav"]).splitlines()
    assert lines[0].split() == [
        "reference", "estimate", "SDR", "SIR", "SAR", "SI-SDR",
        "SDR", "mix", "SIR", "mix", "SAR", "mix", "SDRi", "SIRi",
    ]  # fmt: skip
    assert len(lines) == 4 and lines[3].startswith("mean")
    assert lines[1].split()[:2] == ["a.wav", ["x.wav", "y.wav"][scores.permutation[0]]]
    assert float(lines[3].split()[1]) == pytest.approx(np.mean(scores.sdr), abs=0.005)
    assert len({len(line) for line in lines}) == 1  # aligned: right-justified numbers


def test_non_finite_values_become_null_in_the_dict():
    scores = Scores(*(np.array([np.inf, 1.0]),) * 4, np.array([0, 1]), "fast")
    assert scores.to_dict()["sources"][0]["sdr"] is None
    assert scores.to_dict()["mean"]["sdr"] is None


@pytest.mark.parametrize(
    ("refs", "estimates", "mixture", "message"),
    [
        (np.ones((2, 10)), np.ones((3, 10)), None, r"same shape .* got \(2, 10\) and \(3, 10\)"),
        (np.ones(10), np.ones(10), None, "same shape"),
        (np.ones((2, 0)), np.ones((2, 0)), None, "no signal to score"),
        (np.eye(2, 10) * [[1], [0]], np.ones((2, 10)), None, "reference 1 is silent"),
        (np.ones((2, 10)), np.eye(2, 10) * [[0], [1]], None, "estimate 0 is silent"),
        (np.ones((2, 10)), np.ones((2, 10)), np.zeros(10), "mixture is silent"),
        (np.full((2, 10), np.nan), np.ones((2, 10)), None, "reference 0 contains NaN"),
        (np.ones((2, 10)), np.full((2, 10), np.inf), None, "estimate 0 contains NaN or inf"),
        (np.ones((2, 10)), np.ones((2, 10)), np.ones(9), r"mixture must have shape \(10,\)"),
    ],
)
def test_invalid_input_raises_value_error(refs, estimates, mixture, message):
    with pytest.raises(ValueError, match=message):
        score(refs, estimates, mixture)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'museval'"):
        score(np.eye(2, 10), np.eye(2, 10), backend="museval")


def test_mir_eval_warnings_do_not_reach_users(recwarn):
    refs, estimates = leaky_sources(2, 2000, seed=6)
    score(refs, estimates, refs.sum(axis=0), backend="mir_eval")
    assert len(recwarn) == 0


@pytest.mark.parametrize("seed", range(4))
def test_identical_references_tie_to_the_first_permutation_in_both_backends(seed):
    """The same reference twice: every pairing is equally good (SIR infinite in exact
    arithmetic), so mir_eval's rule (first best in itertools order) gives the identity;
    rounding noise of some 280 dB must not decide."""
    signal = np.random.default_rng(100).standard_normal(16000)
    noise = np.random.default_rng(seed).standard_normal((2, 16000))
    estimates = signal + np.array([[0.3], [0.5]]) * noise
    references = np.stack([signal, signal])
    fast, reference = score(references, estimates), score(references, estimates, backend="mir_eval")
    assert fast.permutation.tolist() == reference.permutation.tolist() == [0, 1]
    np.testing.assert_allclose(fast.sdr, reference.sdr, atol=FAST_TOLERANCE_DB)


def test_identical_estimates_and_partly_identical_references_break_ties_alike():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(4000), np.convolve(rng.standard_normal(4000), np.ones(5) / 5, "same")
    twice = a + 0.5 * b
    assert score(np.stack([a, b]), np.stack([twice, twice])).permutation.tolist() == [0, 1]
    references = np.stack([a, b, a])
    estimates = np.stack(
        [a + 0.6 * rng.standard_normal(4000), b, a + 0.4 * rng.standard_normal(4000)]
    )
    for order in itertools.permutations(range(3)):
        fast = score(references, estimates[list(order)]).permutation.tolist()
        # reference 1 gets the estimate of b; references 0 and 2 the others in index order
        b_at = order.index(1)
        assert fast[1] == b_at and fast[0] < fast[2], (order, fast)
        assert (
            fast
            == score(references, estimates[list(order)], backend="mir_eval").permutation.tolist()
        )


def test_above_five_sources_identical_references_get_their_estimates_in_order():
    refs, estimates = leaky_sources(6, 3000, seed=6)
    refs[4] = refs[1]
    order = np.random.default_rng(6).permutation(6)  # rounding alone put these in reverse
    permutation = score(refs, estimates[order]).permutation
    tied = sorted([int(np.flatnonzero(order == 1)[0]), int(np.flatnonzero(order == 4)[0])])
    assert [permutation[1], permutation[4]] == tied
    others = [0, 2, 3, 5]
    np.testing.assert_array_equal(order[permutation[others]], others)
