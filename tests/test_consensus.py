"""The medoid of restarts: similarity of two runs and the run that agrees most with the others."""

from __future__ import annotations

import numpy as np
import pytest

from ilrma_cli.consensus import medoid, similarity


def _sources(rng: np.random.Generator, n: int = 3, length: int = 4000) -> np.ndarray:
    return rng.standard_normal((n, length)) + 1j * rng.standard_normal((n, length))


def test_similarity_ignores_the_order_scale_and_phase_of_the_sources():
    rng = np.random.default_rng(0)
    a = _sources(rng)
    shuffled = np.array([3.0 * a[2], -0.5j * a[0], 2.0 * a[1]])
    assert similarity(a, shuffled) == pytest.approx(1.0)
    assert similarity(a, _sources(rng)) < 0.1  # independent runs share nothing
    silent = a.copy()
    silent[1] = 0.0
    assert np.isfinite(similarity(a, silent))


def test_similarity_pairs_many_sources_with_the_assignment_solver():
    rng = np.random.default_rng(1)
    a = _sources(rng, n=8)
    order = rng.permutation(8)
    assert similarity(a, a[order] * 2.0) == pytest.approx(1.0)


def test_the_medoid_is_a_run_of_the_majority_never_the_outlier():
    rng = np.random.default_rng(2)
    truth = _sources(rng)
    runs = [truth + 0.3 * _sources(rng) for _ in range(4)]
    outlier = _sources(rng)  # a run that separated something else entirely
    for position in range(5):
        candidates = runs[:position] + [outlier] + runs[position:]
        assert medoid(candidates) != position
    assert medoid([truth]) == 0
