"""Separation quality on the development cases with the reference notebook's settings."""

import numpy as np
import pytest
from conftest import sdr_improvement

from ilrma_cli.engine import UPDATES, ILRMAConfig, project_back, run
from ilrma_cli.stft import StftConfig, istft, stft

THRESHOLD_DB = {"arctic_2src_rt250": 9.0, "arctic_2src_rt500": 4.0}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(THRESHOLD_DB))
@pytest.mark.parametrize("rule", sorted(UPDATES))
def test_mean_sdr_improvement_over_five_seeds(dev_case, case, rule):
    mix, refs, _ = dev_case(case)
    stft_config = StftConfig(4096, 2048, "hann")
    obs = stft(mix, stft_config)
    config = ILRMAConfig(n_basis=2, n_iter=100, update=rule, normalize=True)
    improvements = []
    for seed in range(5):
        result = run(obs, config, seed=seed)
        estimates = istft(
            project_back(result.separated, result.demix, 0), mix.shape[1], stft_config
        )
        improvements.append(sdr_improvement(refs, estimates, mix[0]))
    print(
        f"{case} {rule}: SDRi per seed {np.round(improvements, 2)}, mean {np.mean(improvements):.2f}"
    )
    assert np.mean(improvements) >= THRESHOLD_DB[case]
