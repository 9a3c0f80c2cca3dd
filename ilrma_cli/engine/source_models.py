"""Source models: the time-frequency variances of the separated sources.

Every model gives each source ``n`` a variance ``R[n]`` ``(n_sources, n_freq, n_frames)``
and plugs into the loop of :mod:`ilrma_cli.engine.reference` through one protocol
(:class:`SourceModel`):

* ``update(power, eps)``: one majorisation-minimisation step of the model's parameters
  to fit the output powers ``power = |y|^2``; returns the new ``R``;
* ``weights(power, variance)``: the weights ``1 / b`` of the spatial majoriser
  ``sum_t |y|^2 / b`` (``1 / R`` for Gaussian models);
* ``nll(power, variance)``: the source part of the negative log-likelihood;
* ``variance(eps)`` and ``rescale(gain)`` (power normalisation).

Models (chosen by ``ILRMAConfig.model``; :func:`make_source_model`):

* ``gauss``: :class:`GaussNMF`, Gaussian ILRMA (Kitamura, Ono, Sawada, Kameoka and
  Saruwatari, IEEE/ACM TASLP 24(9), 2016);
* ``t``: :class:`StudentNMF`, t-ILRMA (Kitamura, Mogami et al., EURASIP JASP 2018);
* ``partition``: :class:`PartitionedNMF`, bases shared through a partitioning function
  ("ILRMA type 2", TASLP 2016, Sec. IV-B);
* :class:`SphericalIVA`: the time-varying spherical model of IVA, used for the warm start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ilrma_cli.engine.types import ILRMAConfig, InitialState


class SourceModel(Protocol):
    """What the reference loop needs of a source model (module docstring)."""

    def variance(self, eps: float) -> np.ndarray: ...

    def update(self, power: np.ndarray, eps: float) -> np.ndarray: ...

    def weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray: ...

    def nll(self, power: np.ndarray, variance: np.ndarray) -> float: ...

    def rescale(self, gain: np.ndarray) -> None: ...


def gaussian_nll(power: np.ndarray, variance: np.ndarray) -> float:
    """``sum(|y|^2 / R + log R)``: ``-log N_c(y; 0, R)`` summed, up to constants (TASLP 2016, eq. 25).

    Sums accumulate in float64, one source at a time.
    """
    total = 0.0
    for power_n, variance_n in zip(power, variance, strict=True):
        total += float(np.sum(power_n / variance_n, dtype=np.float64))
        total += sum_log(np.ravel(variance_n))
    return total


def sum_log(values: np.ndarray, group: int = 16) -> float:
    """``sum(log(values))`` of positive ``values`` (1-D) with one logarithm per ``group`` values.

    ``log(a) + log(b) = log(ab)``: products of ``group`` values first (one cheap pass),
    then the logarithms, which cost far more than a product for float64 (numpy's
    float32 logarithm is vectorised, so float32 input takes the direct sum). Falls
    back to the direct sum when a product leaves the float range.
    """
    if values.dtype != np.float64:
        return float(np.sum(np.log(values), dtype=np.float64))
    n_head = values.size - values.size % group
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        products = values[:n_head].reshape(group, -1).prod(axis=0)
        head = float(np.sum(np.log(products)))
    if not np.isfinite(head) or not np.all(products > 0):
        head = float(np.sum(np.log(values[:n_head]), dtype=np.float64))
    return head + float(np.sum(np.log(values[n_head:]), dtype=np.float64))


class Gaussian:
    """The Gaussian likelihood ``y ~ N_c(0, R)``: spatial weights ``1 / R`` and its nll."""

    def weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return 1.0 / variance

    def nll(self, power: np.ndarray, variance: np.ndarray) -> float:
        return gaussian_nll(power, variance)


@dataclass
class GaussNMF(Gaussian):
    """Gaussian ILRMA: ``y_nft ~ N_c(0, R_nft)``, ``R[n] = basis[n] @ activation[n]``."""

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
    ) -> GaussNMF:
        """Uniform random factors in (eps, 1) from ``rng`` only (activation drawn first)."""
        activation = np.maximum(rng.random((n_sources, n_basis, n_frames)), eps)
        basis = np.maximum(rng.random((n_sources, n_freq, n_basis)), eps)
        return cls(basis, activation)

    def variance(self, eps: float, out: np.ndarray | None = None) -> np.ndarray:
        """``R`` ``(n_sources, n_freq, n_frames)`` floored at ``eps`` (into ``out``)."""
        out = np.matmul(self.basis, self.activation, out=out)
        return np.maximum(out, eps, out=out)

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        """Itakura-Saito MM updates of the basis, then the activation (TASLP 2016, eqs. 28-29).

        ``basis *= sqrt(((|y|^2 / R^2) A^T) / ((1 / R) A^T))``, then
        ``activation *= sqrt((B^T (|y|^2 / R^2)) / (B^T (1 / R)))`` with the new ``R``;
        both floored at ``eps``. Returns the new ``R``.
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

    def update_activation(self, numerator: np.ndarray, denominator: np.ndarray, eps: float) -> None:
        """The activation step of :meth:`update` from its two sums, as the compiled sweep gathers them."""
        self.activation *= np.sqrt(numerator / np.maximum(denominator, eps))
        np.maximum(self.activation, eps, out=self.activation)

    def rescale(self, gain: np.ndarray) -> None:
        """Multiply each source's variance by ``gain`` ``(n_sources,)``."""
        self.basis *= gain[:, None, None]


@dataclass
class StudentNMF(GaussNMF):
    """t-ILRMA: ``-log p(y) = log R + (1 + dof/2) log(1 + 2|y|^2 / (dof R))`` (+ const).

    Both steps are MM (EURASIP JASP 2018, Sec. 3, domain parameter p = 2): with
    ``b = (dof R + 2|y|^2) / (dof + 2)`` the spatial majoriser is ``sum |y|^2 / b``, and
    the source majoriser is an Itakura-Saito fit of ``R`` to ``|y|^2 R / b`` (tangent of
    the concave ``log(1 + c / R)`` in ``1 / R``), solved by the IS-NMF updates.
    ``dof -> inf`` is Gaussian ILRMA.
    """

    dof: float = 1.0

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        variance = self.variance(eps)
        return super().update(power * variance / self._mixed(power, variance), eps)

    def weights(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return 1.0 / self._mixed(power, variance)

    def nll(self, power: np.ndarray, variance: np.ndarray) -> float:
        terms = np.log(variance) + (1 + self.dof / 2) * np.log1p(2 * power / (self.dof * variance))
        return float(np.sum(terms))

    def _mixed(self, power: np.ndarray, variance: np.ndarray) -> np.ndarray:
        return (self.dof * variance + 2 * power) / (self.dof + 2)


@dataclass
class PartitionedNMF(Gaussian):
    """``R[n] = (basis * partition[n]) @ activation``: bases shared by all sources.

    ``basis`` ``(n_freq, n_bases)``, ``activation`` ``(n_bases, n_frames)``,
    ``partition`` ``(n_sources, n_bases)`` with columns summing to one. The three updates
    are the IS MM updates of TASLP 2016, eqs. (41)-(43), in their square-root form.
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
        """Uniform random factors in (eps, 1); the partition then normalised."""
        activation = np.maximum(rng.random((n_bases, n_frames)), eps)
        basis = np.maximum(rng.random((n_freq, n_bases)), eps)
        partition = np.maximum(rng.random((n_sources, n_bases)), eps)
        model = cls(basis, activation, partition)
        model._normalise()
        return model

    def variance(self, eps: float) -> np.ndarray:
        return np.maximum((self.partition[:, None, :] * self.basis) @ self.activation, eps)

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        """Partition, then basis, then activation; each a square-root IS-MM step."""
        num, den = self._ratios(power, eps)  # (n_sources, n_freq, n_frames)
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

    def _ratios(self, power: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        inv_var = 1.0 / self.variance(eps)
        return power * inv_var * inv_var, inv_var

    def _normalise(self) -> None:
        """Columns of ``partition`` sum to one; the basis absorbs the scale (``R`` unchanged)."""
        total = self.partition.sum(axis=0)
        self.partition /= total
        self.basis *= total


@dataclass
class SphericalIVA(Gaussian):
    """IVA's source model: one variance per source and frame, shared by all frequencies.

    ``y_nft ~ N_c(0, r_nt)`` (Gaussian IVA with a time-varying scale; Ono, WASPAA 2011).
    The update ``r_nt = mean_f |y_nft|^2`` is the exact minimiser of the negative
    log-likelihood in ``r``; every frequency of a source follows the same envelope, so
    IVA has no permutation problem.
    """

    scale: np.ndarray  # (n_sources, n_frames)
    n_freq: int

    def variance(self, eps: float) -> np.ndarray:
        n_sources, n_frames = self.scale.shape
        return np.broadcast_to(self.scale[:, None, :], (n_sources, self.n_freq, n_frames))

    def update(self, power: np.ndarray, eps: float) -> np.ndarray:
        self.scale = np.maximum(power.sum(axis=1) / self.n_freq, eps)
        return self.variance(eps)

    def rescale(self, gain: np.ndarray) -> None:
        self.scale = self.scale * gain[:, None]


def make_source_model(
    config: ILRMAConfig,
    n_sources: int,
    n_freq: int,
    n_frames: int,
    rng: np.random.Generator,
    eps: float,
    init: InitialState | None = None,
) -> GaussNMF | PartitionedNMF:
    """The source model of ``config``: from ``init`` (in the working scale) or random from ``rng``.

    The partitioned model has ``n_basis * n_sources`` shared bases.
    """
    if init is not None and init.basis is not None:
        if init.activation is None or (config.model == "partition") != (init.partition is not None):
            raise ValueError(
                "an initial NMF state needs basis, activation (and partition) together"
            )
        basis, activation = init.basis.astype(np.float64), init.activation.astype(np.float64)
        if config.model == "partition":
            assert init.partition is not None
            return PartitionedNMF(basis, activation, init.partition.astype(np.float64))
        start = GaussNMF(basis, activation)
    elif config.model == "partition":
        n_bases = config.n_basis * n_sources
        return PartitionedNMF.random(n_sources, n_freq, n_frames, n_bases, rng, eps)
    else:
        start = GaussNMF.random(n_sources, n_freq, n_frames, config.n_basis, rng, eps)
    if config.model == "t":
        return StudentNMF(start.basis, start.activation, config.dof)
    return start
