"""Every model x rule gives the numbers it gave when ``tests/golden/engine_runs.npz`` was made.

The file pins the engine's arithmetic from a fixed input and start. Regenerate it with
``python tests/test_golden.py --regenerate`` only after a change meant to alter the numbers,
and say in the commit why they changed.
"""

from __future__ import annotations

import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from ilrma_cli.engine import MODELS, RULES, ILRMAConfig, InitialState, run

FILE = Path(__file__).resolve().parent / "golden" / "engine_runs.npz"
N_ITER = 5


def fixed_input() -> tuple[np.ndarray, InitialState]:
    """A 3-channel mixture ``(3, 17, 40)`` of heavy-tailed sources and a non-trivial start."""
    rng = np.random.default_rng(2024)
    scale = rng.exponential(1.0, (3, 17, 40))
    sources = np.sqrt(scale) * (
        rng.standard_normal(scale.shape) + 1j * rng.standard_normal(scale.shape)
    )
    mixing = rng.standard_normal((17, 3, 3)) + 1j * rng.standard_normal((17, 3, 3))
    obs = np.einsum("fmn,nft->mft", mixing, sources)
    demix = np.eye(3) + 0.1 * (
        rng.standard_normal((17, 3, 3)) + 1j * rng.standard_normal((17, 3, 3))
    )
    return obs, InitialState(demix=demix)


def runs() -> dict[str, np.ndarray]:
    """Demixing matrices and losses of every model x rule, ``{model}_{rule}_{demix|loss}``."""
    obs, init = fixed_input()
    arrays = {}
    for model, rule in product(MODELS, RULES):
        config = ILRMAConfig(n_basis=2, n_iter=N_ITER, update=rule, model=model, dof=2.0)
        result = run(obs, config, seed=3, init=init)
        arrays[f"{model}_{rule}_demix"] = result.demix
        arrays[f"{model}_{rule}_loss"] = result.loss
    return arrays


@pytest.fixture(scope="module")
def golden():
    with np.load(FILE) as stored:
        return dict(stored)


@pytest.fixture(scope="module")
def current():
    return runs()


def test_every_model_and_rule_is_pinned(golden, current):
    assert sorted(golden) == sorted(current) and len(golden) == 2 * len(MODELS) * len(RULES)


@pytest.mark.parametrize(("model", "rule"), list(product(MODELS, RULES)))
def test_the_numbers_have_not_moved(golden, current, model, rule):
    key = f"{model}_{rule}"
    np.testing.assert_allclose(
        current[f"{key}_demix"], golden[f"{key}_demix"], rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(current[f"{key}_loss"], golden[f"{key}_loss"], rtol=1e-11)


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate"]:
    np.savez_compressed(FILE, **runs())
    print(f"wrote {FILE}")
