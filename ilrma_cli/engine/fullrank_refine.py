"""Entry point of the full-rank model: start from the ILRMA (or IVA) solution, refine, filter.

:func:`refine_fullrank` turns a rank-1 solution into a starting point of the
FastMNMF2 model (:mod:`ilrma_cli.engine.fullrank`) and iterates it with the
compiled passes (:mod:`ilrma_cli.engine.fullrank_compiled`);
:func:`fullrank_images` gives the source images through the multichannel Wiener
filter. The start from a demixing matrix ``W_f`` ``(n_src, n_mics)``:

- ``n_src == n_mics``: ``Q_f = W_f``, the NMF of each source is ILRMA's, and
  ``g_n = e_n + floor`` (one-hot plus ``weight_floor`` on the other rows). With
  ``weight_floor = 0`` the model *is* the ILRMA model (same loss, and the Wiener
  filter is ILRMA's projection back); the floor lets the weights, hence the
  spatial covariances, become full rank.
- ``n_src < n_mics`` (ILRMA in the principal subspace): the extra rows of ``Q_f``
  span the outputs uncorrelated with the sources (the null space of ``W_f R_f``,
  ``R_f = mean_t x x^H``), and every source gets the same weight on them, sized
  so that the model matches their mean power.
- ``n_src > n_mics``: the first ``n_mics`` sources start from the determined
  solution; each extra source gets a random NMF (``seed``) at the mean scale of
  the others and random positive weights on every row (a diffuse start the
  iterations can then focus).

``n_basis`` other than ILRMA's refits the NMF of the first sources to the
demixed powers ``|w_n^H x|^2`` (IS-NMF from a random start, ``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ilrma_cli.engine import fullrank as ref
from ilrma_cli.engine.fullrank import EPS, FullRankModel
from ilrma_cli.engine.observation import (
    freq_blocks,
    power_coefficients,
    to_hermitian,
    unit_power_features,
)
from ilrma_cli.engine.types import Callback

NMF_FIT_ITER = 30  # IS-NMF iterations when the NMF is refitted to the demixed powers
DEFAULT_WEIGHT_FLOOR = 1e-2  # of a start (initial_model)
# refine_fullrank's defaults, the best found on the dev cases (docs/FULLRANK.md):
# the NMF refitted to 16 bases and weights floored at 5e-2 at the start.
REFINE_N_BASIS = 16
REFINE_WEIGHT_FLOOR = 5e-2
# With more sources than mics: ILRMA's own NMF and this floor (docs/FULLRANK.md).
MORE_SOURCES_WEIGHT_FLOOR = 1e-2


@dataclass
class FullRankResult(FullRankModel):
    """The refined model (see :class:`FullRankModel`) and its loss per iteration.

    The model applies to the observation at unit mean power (the engine's working scale);
    :func:`fullrank_images` is scale-free. ``loss`` has the start and one value per
    iteration done (empty when not recorded).
    """

    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0


def demixed_powers(feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``|rows[f, n] @ x_ft|^2`` ``(n_rows, n_freq, n_frames)`` from the features: a view of a
    C-contiguous ``(n_freq, n_rows, n_frames)`` array (the layout of ``fit_nmf_compiled``)."""
    out = np.matmul(power_coefficients(rows), feats)
    return np.maximum(out, 0.0, out=out).transpose(1, 0, 2)


def nmf_start(
    power: np.ndarray, n_basis: int, rng: np.random.Generator, eps: float = EPS
) -> tuple[np.ndarray, np.ndarray]:
    """A random start of the NMF of ``power`` ``(n, n_freq, n_frames)`` at its mean scale:
    ``basis`` ``(n, n_freq, n_basis)``, ``activation`` ``(n, n_basis, n_frames)``."""
    n, n_freq, n_frames = power.shape
    scale = np.sqrt(max(float(power.mean()), eps) / n_basis)
    basis = scale * (0.5 + rng.random((n, n_freq, n_basis)))
    activation = scale * (0.5 + rng.random((n, n_basis, n_frames)))
    return basis, activation


def fit_nmf(
    power: np.ndarray, basis: np.ndarray, activation: np.ndarray, n_iter: int, eps: float = EPS
) -> None:
    """IS-NMF ``power ~ basis @ activation`` ``(n, n_freq, n_frames)``, in place (the reference
    of :func:`ilrma_cli.engine.fullrank_compiled.fit_nmf_compiled`, which the engine runs).

    The rank-1 special case of the full-rank updates (identity weights, so
    :func:`ilrma_cli.engine.fullrank.update_basis` and ``update_activation`` with the sums
    over mics dropped): ``w <- w sqrt((P / V^2) h^T / (1 / V) h^T)``, then the same for
    ``h``, with ``V = max(w h, eps)`` (Fevotte & Idier 2011, the MM form). The ratios are
    formed one block of frequencies at a time (:func:`freq_blocks`), so the temporaries do
    not grow with the recording; the activation sums add the blocks in order.
    """
    blocks = freq_blocks(power.shape[1], power.shape[2])

    def ratios(block: slice) -> tuple[np.ndarray, np.ndarray]:
        inv = 1.0 / np.maximum(basis[:, block] @ activation, eps)
        return power[:, block] * inv * inv, inv

    for _ in range(n_iter):
        act_t = activation.transpose(0, 2, 1)
        num_h, den_h = np.zeros_like(activation), np.zeros_like(activation)
        for block in blocks:
            num, inv = ratios(block)
            basis[:, block] *= np.sqrt((num @ act_t) / np.maximum(inv @ act_t, eps))
            np.maximum(basis[:, block], eps, out=basis[:, block])
            num, inv = ratios(block)
            basis_t = basis[:, block].transpose(0, 2, 1)
            num_h += basis_t @ num
            den_h += basis_t @ inv
        activation *= np.sqrt(num_h / np.maximum(den_h, eps))
        np.maximum(activation, eps, out=activation)


def _complement_rows(feats: np.ndarray, demix: np.ndarray) -> np.ndarray:
    """Rows ``(n_freq, n_mics - n_src, n_mics)`` spanning the null space of ``W_f R_f``, unit output power."""
    n_freq, n_src, n_mics = demix.shape
    cov = to_hermitian(feats[:, :, :].mean(axis=2), n_mics)  # R_f
    _, _, vh = np.linalg.svd(demix @ cov)
    rows = vh[:, n_src:, :]  # (W R) v = 0 for v = vh[k]^H; the row is v^H = vh[k]
    power = demixed_powers(feats, rows).mean(axis=2).T  # (n_freq, n_extra)
    return rows / np.sqrt(np.maximum(power, EPS))[:, :, None]


def initial_model(
    feats: np.ndarray,
    demix: np.ndarray,
    basis: np.ndarray,
    activation: np.ndarray,
    n_src: int | None = None,
    n_basis: int | None = None,
    weight_floor: float = DEFAULT_WEIGHT_FLOOR,
    seed: int = 0,
    weights_per_freq: bool = False,
) -> FullRankModel:
    """The start from a rank-1 solution (module docstring), normalised; with
    ``weights_per_freq`` the same weights at every frequency ``(n_src, n_freq, n_mics)``.

    ``feats`` ``(n_freq, m*m, n_frames)`` are the unit-power features of the mixture,
    ``demix`` ``(n_freq, n_det, m)``, ``basis`` ``(n_det, n_freq, k)``, ``activation``
    ``(n_det, k, n_frames)`` its ILRMA solution on them (``n_det <= m``).
    """
    n_freq, n_det, n_mics = demix.shape
    n_src = n_det if n_src is None else n_src
    if n_src < n_det:
        raise ValueError(f"n_src ({n_src}) must be at least the demixed sources ({n_det})")
    if n_det < n_mics and n_src > n_det:
        raise ValueError("more sources than the demixed ones needs a determined start")
    rng = np.random.default_rng(seed)
    diag = demix.astype(np.complex128)
    if n_det < n_mics:
        diag = np.concatenate([diag, _complement_rows(feats, demix)], axis=1)
    if n_basis is not None and n_basis != basis.shape[-1]:
        from ilrma_cli.engine.fullrank_compiled import fit_nmf_compiled

        power = demixed_powers(feats, demix)
        basis, activation = nmf_start(power, n_basis, rng)
        by_freq = np.ascontiguousarray(power.transpose(1, 0, 2))  # a view: no copy
        fit_nmf_compiled(by_freq, basis, activation, NMF_FIT_ITER)
    basis, activation = basis.astype(float), activation.astype(float)
    if n_det < n_mics:  # ILRMA ran on the subspace, whose unit power is another scale
        power = demixed_powers(feats, demix)
        gain = np.mean(power / np.maximum(basis @ activation, EPS), axis=(1, 2))
        basis = basis * gain[:, None, None]  # the maximum-likelihood scale of each source
    weights = np.full((n_src, n_mics), weight_floor)
    weights[np.arange(n_det), np.arange(n_det)] = 1.0
    if n_det < n_mics:
        extra = demixed_powers(feats, diag[:, n_det:]).mean(axis=(1, 2))
        total = np.maximum(basis @ activation, EPS).mean(axis=(1, 2)).sum()
        weights[:, n_det:] = np.maximum(extra / total, weight_floor)[None, :]
    if n_src > n_det:
        k = basis.shape[-1]
        scale = np.sqrt(float(np.maximum(basis @ activation, EPS).mean()) / k)
        new_basis = scale * (0.5 + rng.random((n_src - n_det, n_freq, k)))
        new_act = scale * (0.5 + rng.random((n_src - n_det, k, activation.shape[-1])))
        basis = np.concatenate([basis, new_basis])
        activation = np.concatenate([activation, new_act])
        weights[n_det:] = 0.5 + rng.random((n_src - n_det, n_mics))
    if weights_per_freq:
        weights = np.repeat(weights[:, None, :], n_freq, axis=1)
    model = FullRankModel(diag, weights, np.ascontiguousarray(basis), activation)
    ref.normalise(model)
    return model


def random_model(
    n_freq: int,
    n_frames: int,
    n_mics: int,
    n_src: int,
    n_basis: int,
    rng: np.random.Generator,
    weight_floor: float = 5e-2,
    diagonaliser: np.ndarray | None = None,
) -> FullRankModel:
    """A blind start as pyroomacoustics' ``fastmnmf2``: identity (or given) ``Q``, random NMF.

    ``g_nm = weight_floor`` except ``g_{m mod n_src, m} = 1``; rows of ``Q_f`` at unit norm;
    activation then basis uniform in [0, 1) from ``rng``.
    """
    diag = np.tile(np.eye(n_mics, dtype=np.complex128), (n_freq, 1, 1))
    if diagonaliser is not None:
        diag = diagonaliser.astype(np.complex128)
    diag = diag / np.linalg.norm(diag, axis=2, keepdims=True)
    weights = np.full((n_src, n_mics), weight_floor)
    weights[np.arange(n_mics) % n_src, np.arange(n_mics)] = 1.0
    activation = rng.random((n_src, n_basis, n_frames))
    basis = rng.random((n_src, n_freq, n_basis))
    return FullRankModel(diag, weights, basis, activation)


def refine_fullrank(
    obs: np.ndarray,
    demix: np.ndarray,
    basis: np.ndarray,
    activation: np.ndarray,
    n_iter: int = 100,
    n_src: int | None = None,
    n_basis: int | None = REFINE_N_BASIS,
    weight_floor: float = REFINE_WEIGHT_FLOOR,
    seed: int = 0,
    callback: Callback | None = None,
    record_loss: bool = True,
    weights_per_freq: bool = False,
) -> FullRankResult:
    """Refine an ILRMA/IVA solution with the full-rank model; ``n_iter`` compiled iterations.

    ``obs`` ``(n_mics, n_freq, n_frames)`` is the mixture spectrogram and ``demix``
    ``(n_freq, n_det, n_mics)``, ``basis`` ``(n_det, n_freq, k)`` and ``activation``
    ``(n_det, k, n_frames)`` a solution in its scale, as :func:`ilrma_cli.engine.run`
    returns them; the model is fitted at unit mean power (the returned one too). ``n_src`` (default
    ``n_det``) may exceed ``n_mics`` (see the module docstring); ``n_basis`` refits the
    NMF (None keeps ILRMA's; with ``n_basis=None, weight_floor=0`` the start is ILRMA's
    model exactly; for ``n_src > n_mics`` pass ``n_basis=None, weight_floor=1e-2``, which did
    far better there than the defaults, see docs/FULLRANK.md). ``weights_per_freq`` gives
    the model one set of spatial weights per frequency (FastMNMF1; :mod:`ilrma_cli.engine.fullrank`).
    ``callback(it, loss)`` returning True stops after that iteration (the basis has then had
    one more update, which only lowers the loss).
    """
    from ilrma_cli.engine.fullrank_compiled import iterate_compiled

    feats, mean_power = unit_power_features(obs)
    basis = basis / mean_power  # to the working scale (run returns the caller's)
    model = initial_model(
        feats, demix, basis, activation, n_src, n_basis, weight_floor, seed, weights_per_freq
    )
    losses, n_done = iterate_compiled(feats, model, n_iter, callback, record_loss)
    return FullRankResult(
        model.diagonaliser,
        model.spatial_weights,
        model.basis,
        model.activation,
        loss=np.asarray(losses),
        n_iter=n_done,
    )


def fullrank_images(obs: np.ndarray, model: FullRankModel, ref_mic: int | None = 0) -> np.ndarray:
    """Source images by the multichannel Wiener filter (:func:`ilrma_cli.engine.fullrank.wiener_images`,
    compiled: :func:`ilrma_cli.engine.fullrank_compiled.wiener_images_compiled`).

    ``(n_src, n_freq, n_frames)`` at ``ref_mic``, or ``(n_src, n_mics, n_freq, n_frames)``
    at every mic when it is None; ``obs`` at any scale (the filter is scale-free).
    """
    from ilrma_cli.engine.fullrank_compiled import wiener_images_compiled

    return wiener_images_compiled(obs, model, ref_mic)
