"""Prototype: ILRMA whose NMF starts deterministically from the IVA output powers.

Today the only random part of a default run is :meth:`NMFModel.random` (the IVA start is
deterministic), so the seed swing is the NMF start. Here the NMF of each source starts from
its IVA output power ``P_n = |W_iva x|^2`` ``(n_freq, n_frames)``: NNDSVD (Boutsidis &
Gallopoulos, Pattern Recognition 41(4), 2008; zeros filled with the mean, "NNDSVDa") of
``P_n`` gives ``K`` nonnegative basis/activation pairs, refined by ``fit_iter``
Itakura-Saito multiplicative updates on the fixed ``P_n`` (:meth:`NMFModel.update`, the
ILRMA source-model rule). ILRMA then runs its usual iterations from (IVA demixing, this
model). Nothing is random. Engine internals are used read-only.

The grid harness runs it through the spec ``start=warmN`` (NNDSVDa + N fitting updates,
default 20) and ``start=prefitN`` (the engine's random start from the seed + N fitting
updates with the demixing matrices held at the IVA start), see :func:`separate_warm`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from ilrma_cli.engine import InitialState, mixing_matrices, run
from ilrma_cli.engine.run import EPS
from ilrma_cli.engine.source_models import GaussNMF
from ilrma_cli.pipeline import Separation, SourceSignals, analyse
from ilrma_cli.settings import SeparationSettings


def nndsvd(power: np.ndarray, n_basis: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVDa of ``power`` ``(n_freq, n_frames)``: ``basis`` ``(n_freq, K)``, ``activation`` ``(K, n_frames)``."""
    u, s, vt = np.linalg.svd(power, full_matrices=False)
    basis = np.zeros((power.shape[0], n_basis))
    activation = np.zeros((n_basis, power.shape[1]))
    basis[:, 0] = np.sqrt(s[0]) * np.abs(u[:, 0])
    activation[0] = np.sqrt(s[0]) * np.abs(vt[0])
    for k in range(1, min(n_basis, s.size)):
        x, y = u[:, k], vt[k]
        xp, xn, yp, yn = np.maximum(x, 0), np.maximum(-x, 0), np.maximum(y, 0), np.maximum(-y, 0)
        pos = np.linalg.norm(xp) * np.linalg.norm(yp)
        neg = np.linalg.norm(xn) * np.linalg.norm(yn)
        if pos >= neg:
            a, b, sigma = xp / max(np.linalg.norm(xp), eps), yp / max(np.linalg.norm(yp), eps), pos
        else:
            a, b, sigma = xn / max(np.linalg.norm(xn), eps), yn / max(np.linalg.norm(yn), eps), neg
        basis[:, k] = np.sqrt(s[k] * sigma) * a
        activation[k] = np.sqrt(s[k] * sigma) * b
    mean = power.mean()
    basis[basis <= eps] = np.sqrt(mean)
    activation[activation <= eps] = np.sqrt(mean)
    return basis, activation


def warm_model(power: np.ndarray, n_basis: int, fit_iter: int, seed: int | None = None) -> GaussNMF:
    """The NMF start for output powers ``(n_sources, n_freq, n_frames)``: NNDSVDa (``seed``
    None, deterministic) or the engine's random start from ``seed``, then ``fit_iter``
    IS-NMF updates on ``power``."""
    if seed is None:
        parts = [nndsvd(p, n_basis, EPS) for p in power]
        model = GaussNMF(np.stack([b for b, _ in parts]), np.stack([a for _, a in parts]))
    else:
        rng = np.random.default_rng(seed)
        model = GaussNMF.random(*power.shape[:2], power.shape[2], n_basis, rng, EPS)
    for _ in range(fit_iter):
        model.update(power, EPS)
    return model


def separate_warm(
    mixture: np.ndarray,
    settings: SeparationSettings,
    rate: int,
    fit_iter: int = 20,
    random_start: bool = False,
) -> Separation:
    """:func:`ilrma_cli.pipeline.separate` (one run, Gaussian model) with the warm NMF start
    (``random_start``: the engine's random start from ``settings.seed``, pre-fitted)."""
    analysis = analyse(mixture, settings, rate)
    obs = analysis.obs
    assert obs is not None and analysis.settings.stft is not None
    config = analysis.settings.ilrma
    with threadpool_limits(limits=1, user_api="blas"):
        ivas = run(obs, replace(config, n_iter=0, record_loss=False), n_sources=settings.n_sources)
        power = ivas.separated.real**2 + ivas.separated.imag**2  # the IVA outputs
        model = warm_model(power, config.n_basis, fit_iter, settings.seed if random_start else None)
        start = InitialState(demix=ivas.demix, basis=model.basis, activation=model.activation)
        result = run(obs, replace(config, iva_iter=0), init=start, n_sources=settings.n_sources)
        mixing = mixing_matrices(result.demix)
    signals = SourceSignals(
        result.separated,
        mixing,
        analysis.settings.ref_mic,
        analysis.n_samples,
        analysis.settings.stft,
    )
    return Separation(signals, result, {}, analysis.settings, settings.seed, [])
