"""Source models of ILRMA beyond the Gaussian NMF of :mod:`ilrma_cli.engine.model`.

A source model gives each source ``n`` a time-frequency scale ``R[n]``
``(n_sources, n_freq, n_frames)`` and, through the two methods below, plugs into
the loop of :func:`ilrma_cli.engine.ilrma.run`:

* ``demix_weights(power, variance)``: the weights ``1 / b`` of the spatial
  (demixing) majoriser ``sum |y|^2 / b`` at the current outputs ``power = |y|^2``;
* ``source_nll(power, variance)``: the source part of the negative log-likelihood.

Models:

* ``gauss``: Gaussian ILRMA (Kitamura et al., IEEE/ACM TASLP 24(9), 2016).
* ``t``: t-ILRMA, complex Student's t with ``dof`` degrees of freedom and NMF
  scale (Kitamura, Mogami et al., EURASIP JASP 2018, domain parameter p = 2).
* ``partition``: Gaussian ILRMA whose bases are shared by all sources through a
  partitioning function ``Z`` ``(n_sources, n_bases)``, ``sum_n Z[n, k] = 1``
  (the "ILRMA type 2" of TASLP 2016, Sec. IV-B).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilrma_cli.engine.model import NMFModel

MODELS = ("gauss", "t", "partition")


class GaussNMF(NMFModel):
    """Gaussian ILRMA: ``y ~ N_c(0, R)``, ``R = basis @ activation``."""

    def demix_weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return 1.0 / variance

    def source_nll(self, power: np.ndarray, variance: np.ndarray) -> float:
        return float(np.sum(power / variance + np.log(variance)))


@dataclass
class StudentNMF(NMFModel):
    """t-ILRMA: ``-log p(y) = log R + (1 + dof/2) log(1 + 2|y|^2 / (dof R))`` (+ const).

    Both steps are majorisation-minimisation (EURASIP JASP 2018, Sec. 3): with
    ``b = (dof R + 2|y|^2) / (dof + 2)`` the spatial majoriser is ``sum |y|^2 / b``,
    and the source majoriser is an Itakura-Saito fit of ``R`` to ``|y|^2 R / b``
    (tangent of the concave ``log(1 + c / R)`` in ``1 / R``), solved by the
    IS-NMF updates. ``dof -> inf`` gives Gaussian ILRMA; small ``dof`` is heavy-tailed.
    """

    dof: float = 1.0

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        variance = self.variance(eps)
        return super().update(power * variance / self._mixed(power, variance), eps)

    def demix_weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return 1.0 / self._mixed(power, variance)

    def source_nll(self, power: np.ndarray, variance: np.ndarray) -> float:
        terms = np.log(variance) + (1 + self.dof / 2) * np.log1p(2 * power / (self.dof * variance))
        return float(np.sum(terms))

    def _mixed(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return (self.dof * variance + 2 * power) / (self.dof + 2)


@dataclass
class PartitionedNMF:
    """``R[n] = (basis * partition[n]) @ activation``: ``n_bases`` shared by all sources.

    ``basis`` ``(n_freq, n_bases)``, ``activation`` ``(n_bases, n_frames)``,
    ``partition`` ``(n_sources, n_bases)`` with columns summing to one. The three
    updates are the IS majorisation-minimisation updates of TASLP 2016, eqs. (41)-(43).
    """

    basis: np.ndarray
    activation: np.ndarray
    partition: np.ndarray

    @classmethod
    def random(
        cls,
        n_sources: int,
        n_freq: int,
        n_frames: int,
        n_bases: int,
        rng: np.random.Generator,
        eps: float,
    ) -> PartitionedNMF:
        """Uniform random basis and activation in (eps, 1); partition uniform then normalised."""
        activation = np.maximum(rng.random((n_bases, n_frames)), eps)
        basis = np.maximum(rng.random((n_freq, n_bases)), eps)
        partition = np.maximum(rng.random((n_sources, n_bases)), eps)
        model = cls(basis, activation, partition)
        model._normalise()
        return model

    def variance(self, eps: float) -> np.ndarray:
        return np.maximum((self.partition[:, None, :] * self.basis) @ self.activation, eps)

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        """Partition, then basis, then activation; each a sqrt-form IS-MM step."""
        num, den = self._ratios(power, eps)  # (n_sources, n_freq, n_frames)
        # d/dz: sum_ft basis[f,k] act[k,t] (.)[n,f,t]
        grad_n = np.einsum("nft,fk,kt->nk", num, self.basis, self.activation, optimize=True)
        grad_d = np.einsum("nft,fk,kt->nk", den, self.basis, self.activation, optimize=True)
        self.partition *= np.sqrt(grad_n / np.maximum(grad_d, eps))
        np.maximum(self.partition, eps, out=self.partition)

        num, den = self._ratios(power, eps)
        grad_n = np.einsum("nft,nk,kt->fk", num, self.partition, self.activation, optimize=True)
        grad_d = np.einsum("nft,nk,kt->fk", den, self.partition, self.activation, optimize=True)
        self.basis *= np.sqrt(grad_n / np.maximum(grad_d, eps))
        np.maximum(self.basis, eps, out=self.basis)

        num, den = self._ratios(power, eps)
        grad_n = np.einsum("nft,nk,fk->kt", num, self.partition, self.basis, optimize=True)
        grad_d = np.einsum("nft,nk,fk->kt", den, self.partition, self.basis, optimize=True)
        self.activation *= np.sqrt(grad_n / np.maximum(grad_d, eps))
        np.maximum(self.activation, eps, out=self.activation)
        self._normalise()
        return self.variance(eps)

    def rescale(self, gain: np.ndarray) -> None:
        """Multiply each source's variance by ``gain`` ``(n_sources,)``."""
        self.partition *= gain[:, None]
        self._normalise()

    def demix_weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return 1.0 / variance

    def source_nll(self, power: np.ndarray, variance: np.ndarray) -> float:
        return float(np.sum(power / variance + np.log(variance)))

    def _ratios(self, power: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        inv_var = 1.0 / self.variance(eps)
        return power * inv_var * inv_var, inv_var

    def _normalise(self) -> None:
        """Columns of ``partition`` sum to one; the basis absorbs the scale (``R`` unchanged)."""
        total = self.partition.sum(axis=0)
        self.partition /= total
        self.basis *= total


SourceModel = GaussNMF | StudentNMF | PartitionedNMF


def make_model(
    name: str,
    n_sources: int,
    n_freq: int,
    n_frames: int,
    n_basis: int,
    rng: np.random.Generator,
    eps: float,
    dof: float = 1.0,
) -> SourceModel:
    """The source model ``name``, randomly initialised from ``rng`` (``n_basis`` per source)."""
    if name == "partition":
        return PartitionedNMF.random(n_sources, n_freq, n_frames, n_basis * n_sources, rng, eps)
    start = NMFModel.random(n_sources, n_freq, n_frames, n_basis, rng, eps)
    if name == "t":
        return StudentNMF(start.basis, start.activation, dof)
    if name == "gauss":
        return GaussNMF(start.basis, start.activation)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
