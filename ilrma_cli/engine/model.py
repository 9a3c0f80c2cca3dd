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

    def variance(self, eps: float) -> np.ndarray:
        """Model variances ``R`` ``(n_sources, n_freq, n_frames)``, floored at ``eps``."""
        return np.maximum(self.basis @ self.activation, eps)

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        """One IS-NMF update of basis then activation to fit ``power`` ``(n_sources, n_freq, n_frames)``.

        Returns the new variances ``R`` (floored at ``eps``).
        """
        inv_var = 1.0 / self.variance(eps)
        weighted = power * inv_var * inv_var
        act_t = self.activation.transpose(0, 2, 1)
        self.basis *= np.sqrt((weighted @ act_t) / np.maximum(inv_var @ act_t, eps))
        np.maximum(self.basis, eps, out=self.basis)

        inv_var = 1.0 / self.variance(eps)
        weighted = power * inv_var * inv_var
        basis_t = self.basis.transpose(0, 2, 1)
        self.activation *= np.sqrt((basis_t @ weighted) / np.maximum(basis_t @ inv_var, eps))
        np.maximum(self.activation, eps, out=self.activation)
        return self.variance(eps)

    def rescale(self, gain: np.ndarray) -> None:
        """Multiply each source's variance by ``gain`` ``(n_sources,)``."""
        self.basis *= gain[:, None, None]
