"""Each demixing rule reaches the optimum it promises, also on ill-conditioned covariances.

On speech the weighted covariances ``U_n`` reach condition numbers of 1e12 and
more (a source deemed silent in some frames weighs them by up to 1e12), so the
rules are checked at condition 1e10, where inverses by cofactors fail.
"""

import numpy as np
import pytest

from ilrma_cli.engine import compiled as kernels
from ilrma_cli.engine.observation import FLOOR
from ilrma_cli.engine.spatial import UPDATES


def compiled(rule: str):
    """The per-frequency rule of the compiled sweeps, applied to every frequency."""
    code = kernels.KERNEL_RULES[rule]

    def update(demix: np.ndarray, cov: np.ndarray) -> None:
        mats, vecs, pair = kernels._workspace(*demix.shape[1:])
        for f in range(demix.shape[0]):
            kernels._update_demix(code, demix[f], cov[f], FLOOR, mats, vecs, pair)

    return update


IMPLEMENTATIONS = {"numpy": UPDATES.__getitem__, "compiled": compiled}


def ill_conditioned_covariances(rng: np.random.Generator, n_freq: int, m: int, cond: float):
    """Hermitian positive definite ``(n_freq, m, m, m)`` with eigenvalues spread from 1 to ``cond``."""
    shape = (n_freq, m, m, m)
    unitary = np.linalg.qr(rng.standard_normal(shape) + 1j * rng.standard_normal(shape))[0]
    eig = np.geomspace(1.0, cond, m) * rng.uniform(0.5, 1.0, shape[:-1])
    return np.einsum("fnij,fnj,fnkj->fnik", unitary, eig, unitary.conj())


def optimality_conditions(rule: str, m: int) -> list[tuple[int, int, int]]:
    """``(p, q, n)`` whose ``w_p^H U_n w_q`` must equal ``[p == q]`` after one call of ``rule``.

    IP: the last row n solves ``W U_n w_n = e_n``. IP2: both rows of the last pair
    (n-1, 0), or (0, 1) for two sources, do. ISS: after the last rank-1 step (row k),
    every other output is decorrelated from y_k under its own weights and y_k has unit
    weighted power: ``w_n^H U_n w_k = [n == k]``.
    """
    last = m - 1
    if rule == "ip":
        return [(p, last, last) for p in range(m)]
    if rule == "ip2":
        return [(p, n, n) for n in ([0, 1] if m == 2 else [last, 0]) for p in range(m)]
    return [(n, last, n) for n in range(m)]


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("rule", sorted(UPDATES))
@pytest.mark.parametrize("m", [2, 3, 4])
def test_rule_meets_its_optimality_conditions_on_ill_conditioned_covariances(
    implementation, rule, m
):
    rng = np.random.default_rng(m)
    n_freq = 50
    cov = ill_conditioned_covariances(rng, n_freq, m, 1e10)
    demix = np.eye(m) + 0.3 * (rng.standard_normal((n_freq, m, m)) + 0j)
    IMPLEMENTATIONS[implementation](rule)(demix, cov)
    for p, q, n in optimality_conditions(rule, m):
        value = np.einsum("fi,fij,fj->f", demix[:, p], cov[:, n], demix[:, q].conj())
        np.testing.assert_allclose(value, float(p == q), atol=1e-4, err_msg=f"{(p, q, n)}")
