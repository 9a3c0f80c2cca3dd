"""Source models: the NMF low-rank variance model of Gaussian ILRMA.

Each source n has a time-frequency variance ``R[n] = basis[n] @ activation[n]``
with ``basis`` ``(n_sources, n_freq, n_basis)`` and ``activation``
``(n_sources, n_basis, n_frames)``. The updates are the Itakura-Saito
multiplicative (majorisation-minimisation) updates of Kitamura et al.,
IEEE/ACM TASLP 24(9), 2016, eqs. (28)-(29), in their square-root form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NMFModel:
    """Nonnegative low-rank variances of every source (arrays are updated in place)."""

    basis: np.ndarray  # (n_sources, n_freq, n_basis)
    activation: np.ndarray  # (n_sources, n_basis, n_frames)

    @classmethod
    def random(
        cls,
        n_sources: int,
        n_freq: int,
        n_frames: int,
        n_basis: int,
        rng: np.random.Generator,
        eps: float,
    ) -> NMFModel:
        """Uniform random initialisation in (eps, 1), from ``rng`` only."""
        activation = np.maximum(rng.random((n_sources, n_basis, n_frames)), eps)
        basis = np.maximum(rng.random((n_sources, n_freq, n_basis)), eps)
        return cls(basis, activation)

    def variance(self, eps: float, out: np.ndarray | None = None) -> np.ndarray:
        """Model variances ``R`` ``(n_sources, n_freq, n_frames)``, floored at ``eps`` (into ``out``)."""
        out = np.matmul(self.basis, self.activation, out=out)
        return np.maximum(out, eps, out=out)

    def update(
        self,
        power: np.ndarray,
        eps: float,
        variance: np.ndarray | None = None,
        work: np.ndarray | None = None,
    ) -> np.ndarray:
        """One IS-NMF update of basis then activation to fit ``power`` ``(n_sources, n_freq, n_frames)``.

        ``basis *= sqrt((|Y|^2 / R^2) A^T / ((1 / R) A^T))``, then the same for the
        activation with the new ``R``. ``variance`` may hold the current ``R`` (it
        is then overwritten) and ``work`` is scratch space of the same shape; both
        only save allocations. Returns the new variances ``R`` (floored at ``eps``).
        """
        var = self.variance(eps) if variance is None else variance
        work = np.empty_like(power) if work is None else work
        inv_var = np.divide(1.0, var, out=var)
        weighted = np.multiply(power, inv_var, out=work)
        weighted *= inv_var
        act_t = self.activation.transpose(0, 2, 1)
        self.basis *= np.sqrt((weighted @ act_t) / np.maximum(inv_var @ act_t, eps))
        np.maximum(self.basis, eps, out=self.basis)

        inv_var = np.divide(1.0, self.variance(eps, out=var), out=var)
        weighted = np.multiply(power, inv_var, out=work)
        weighted *= inv_var
        basis_t = self.basis.transpose(0, 2, 1)
        self.activation *= np.sqrt((basis_t @ weighted) / np.maximum(basis_t @ inv_var, eps))
        np.maximum(self.activation, eps, out=self.activation)
        return self.variance(eps, out=var)

    def update_activation(self, numerator: np.ndarray, denominator: np.ndarray, eps: float) -> None:
        """``activation *= sqrt(numerator / denominator)`` (eq. 29 from its two sums), floored at ``eps``."""
        self.activation *= np.sqrt(numerator / np.maximum(denominator, eps))
        np.maximum(self.activation, eps, out=self.activation)

    def rescale(self, gain: np.ndarray) -> None:
        """Multiply each source's variance by ``gain`` ``(n_sources,)``."""
        self.basis *= gain[:, None, None].astype(self.basis.dtype)

    def astype(self, dtype: np.dtype) -> NMFModel:
        """The same model with arrays of ``dtype`` (copies)."""
        return NMFModel(self.basis.astype(dtype), self.activation.astype(dtype))
