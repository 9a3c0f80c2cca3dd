"""Property-based checks: the engine stays finite for any shape, scale and seed."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ilrma_cli.engine import UPDATES, ILRMAConfig, project_back, run


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_channels=st.integers(2, 4),
    n_freq=st.integers(1, 17),
    n_frames=st.integers(1, 40),
    log_scale=st.floats(-150, 150),
    rank_deficient=st.booleans(),
    update=st.sampled_from(sorted(UPDATES)),
    n_basis=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_input_gives_finite_output_and_loss(
    n_channels, n_freq, n_frames, log_scale, rank_deficient, update, n_basis, seed
):
    rng = np.random.default_rng(seed)
    shape = (n_channels, n_freq, n_frames)
    obs = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 10.0**log_scale
    if rank_deficient:
        obs[-1] = obs[0] * 0.5
    result = run(obs, ILRMAConfig(n_basis=n_basis, n_iter=8, update=update), seed=seed)
    assert np.all(np.isfinite(result.separated))
    assert np.all(np.isfinite(result.loss))
    assert np.all(np.isfinite(project_back(result.separated, result.demix, ref_mic=0)))
    assert np.all(np.isfinite(project_back(result.separated, result.demix, ref_mic=None)))
