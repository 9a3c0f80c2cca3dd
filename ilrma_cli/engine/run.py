"""The engine's front door: :func:`run` takes a mixture spectrogram and returns a :class:`Result`.

validate -> principal subspace (fewer sources than channels) -> unit-power scaling ->
initial state (given | identity | IVA warm start) -> backend (compiled when it supports
the settings, else the reference loop; with taps > 0 on the stacked observation of
:mod:`ilrma_cli.engine.taps`, compiled in :mod:`ilrma_cli.engine.taps_compiled`) ->
separated spectrogram, model back to the caller's scale -> :class:`Result` (which
records the backend).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ilrma_cli.engine import init, reference
from ilrma_cli.engine.observation import Observation, demix_apply, freq_blocks, unit_power_features
from ilrma_cli.engine.pca import expand_demix, principal_subspace
from ilrma_cli.engine.source_models import GaussNMF, PartitionedNMF, make_source_model
from ilrma_cli.engine.taps import TapsObservation, extend, taps_observation
from ilrma_cli.engine.types import (
    BACKENDS,
    Callback,
    ILRMAConfig,
    InitialState,
    Result,
)

DEFAULT_CONFIG = ILRMAConfig()
if TYPE_CHECKING:
    from ilrma_cli.engine.fullrank import FullRankModel
    from ilrma_cli.engine.taps_compiled import TapsFrames

# Floor of the model variances and NMF factors in the working (unit mean power) scale.
EPS = 1e-12


def validate_observation(obs: np.ndarray) -> np.ndarray:
    """Check the mixture spectrogram's shape and values; returns it complex (no copy if it was)."""
    obs = np.asarray(obs)
    if obs.ndim != 3:
        raise ValueError(f"obs must have shape (n_channels, n_freq, n_frames), got {obs.shape}")
    if obs.shape[0] < 2:
        raise ValueError(f"ILRMA needs at least 2 channels, got {obs.shape[0]}")
    if obs.shape[1] < 1 or obs.shape[2] < 1:
        raise ValueError(f"obs has no time-frequency bins: shape {obs.shape}")
    if not np.iscomplexobj(obs):
        obs = obs.astype(np.complex128)
    if not all(np.isfinite(obs[:, freqs]).all() for freqs in freq_blocks(*obs.shape[1:])):
        raise ValueError("obs contains NaN or infinite values")
    return obs


def choose_backend(config: ILRMAConfig, backend: str = "auto") -> str:
    """``compiled`` for the Gaussian NMF model (with or without taps, every rule), else ``reference``.

    ``backend`` forces one; ``compiled`` is refused for settings it does not support.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    supported = config.model == "gauss"
    if backend == "compiled" and not supported:
        raise ValueError(f"the compiled backend runs the gauss model, not {config.model!r}")
    if backend == "auto":
        return "compiled" if supported else "reference"
    return backend


def run(
    obs: np.ndarray,
    config: ILRMAConfig = DEFAULT_CONFIG,
    seed: int | np.random.Generator = 0,
    callback: Callback | None = None,
    *,
    init: InitialState | None = None,
    n_sources: int | None = None,
    backend: str = "auto",
) -> Result:
    """Separate ``obs`` ``(n_channels, n_freq, n_frames)`` into ``n_sources`` (default: channels).

    With fewer sources than channels the engine runs on the principal subspace
    (:mod:`ilrma_cli.engine.pca`) and ``Result.demix`` is ``(n_freq, n_sources, n_channels)``.
    More sources than channels need ``config.spatial="fullrank"``: ILRMA separates as many
    sources as channels, and the full-rank model starts the others diffuse
    (:mod:`ilrma_cli.engine.fullrank_refine`); the rank-1 parts of the result (``demix``,
    ``separated``, the NMF) then have ``n_channels`` sources, ``fullrank`` has ``n_sources``.
    Randomness (the NMF start) comes only from ``seed``; ``init`` gives any part of the
    start instead. The separated spectrogram has
    ``config.complex_dtype``; the iterations run in float64 on the outer-product features,
    so ``obs`` is read, never copied (a complex128 copy of the reduced one exists with PCA).
    """
    obs = validate_observation(obs)
    n_ch = obs.shape[0]
    n_wanted = n_ch if n_sources is None else n_sources
    if n_wanted < 2 or (n_wanted > n_ch and config.spatial != "fullrank"):
        raise ValueError(
            f"n_sources must be between 2 and n_channels ({n_ch}) for determined ILRMA, "
            f"or above with the full-rank model, got {n_wanted}"
        )
    n_src = min(n_wanted, n_ch)  # the rank-1 stage
    backend = choose_backend(config, backend)
    mics = obs
    subspace = None
    if n_src < n_ch:
        obs, subspace = principal_subspace(obs.astype(np.complex128, copy=False), n_src)
        obs = obs.astype(config.complex_dtype, copy=False)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    _, n_freq, n_frames = obs.shape
    observation: Observation | TapsObservation | TapsFrames
    if config.taps and backend == "compiled":
        from ilrma_cli.engine import taps_compiled

        observation, mean_power = taps_compiled.taps_frames(obs, mics, config.taps, config.delay)
    elif config.taps:
        observation, mean_power = taps_observation(obs, mics, config.taps, config.delay)
    else:
        feats, mean_power = unit_power_features(obs)
        observation = Observation(feats)
        del feats  # the observation holds the only reference: released with it

    demix = _initial_demix(observation, config, init, subspace, backend)
    model = make_source_model(
        config, n_src, n_freq, n_frames, rng, EPS, _working_scale(init, mean_power)
    )
    loop: Callable[..., tuple[list[float], int]] = reference.iterate
    if backend == "compiled" and config.taps:
        from ilrma_cli.engine import taps_compiled

        loop = taps_compiled.iterate
    elif backend == "compiled":  # supports this observation and model (choose_backend)
        from ilrma_cli.engine import compiled  # numba takes ~0.5 s to load: only runs pay it

        loop = compiled.iterate
    losses, n_done = loop(
        observation,
        demix,
        model,
        config.update,
        config.n_iter,
        normalize=config.normalize,
        record_loss=config.record_loss,
        eps=EPS,
        callback=callback,
        **({"tap_refresh": config.tap_refresh} if config.taps else {}),
    )
    separated, filters = None, None
    if config.taps:
        # The dereverberated outputs; W alone scales them back to the mics.
        assert not isinstance(observation, Observation)
        separated = observation.demix_apply(demix, np.sqrt(mean_power))
        separated = separated.astype(config.complex_dtype, copy=False)
        filters = -demix[..., n_src:]
        demix = np.ascontiguousarray(demix[..., :n_src])
    full_demix = demix if subspace is None else expand_demix(demix, subspace)
    fullrank = None
    if config.spatial == "fullrank" and n_done == config.n_iter:
        assert isinstance(model, GaussNMF) and isinstance(observation, Observation)
        full_feats = observation.feats if subspace is None else unit_power_features(mics)[0]
        del observation
        fullrank, more, n_more = _refine_fullrank(
            full_feats, full_demix, model, config, n_done, callback, n_wanted, rng
        )
        del full_feats
        losses += more
        n_done += n_more
    else:
        del observation
    if separated is None:  # after the features are gone: the memory estimate counts on it
        separated = demix_apply(demix, obs, config.complex_dtype)
    # the caller's scale: basis @ activation ~ |separated|^2
    model.rescale(np.full(n_src, mean_power))
    return Result(
        separated=separated,
        demix=full_demix,
        basis=model.basis,
        activation=model.activation,
        loss=np.asarray(losses),
        n_iter=n_done,
        backend=backend,
        partition=model.partition if isinstance(model, PartitionedNMF) else None,
        fullrank=fullrank,
        filters=filters,
    )


def _refine_fullrank(
    feats: np.ndarray,
    demix: np.ndarray,
    model: GaussNMF,
    config: ILRMAConfig,
    n_done: int,
    callback: Callback | None,
    n_src: int,
    rng: np.random.Generator,
) -> tuple[FullRankModel, list[float], int]:
    """``config.fullrank_iter`` iterations of the full-rank model from the rank-1 solution.

    ``feats`` are the working-scale features of every microphone and ``demix``
    ``(n_freq, n_det, n_channels)`` the rank-1 solution (:mod:`ilrma_cli.engine.fullrank_refine`);
    the model has ``n_src >= n_det`` sources. The callback sees iterations ``n_done + 1, ...``;
    returns the model, its losses after each iteration (the last only without
    ``config.record_loss``) and the iterations done.

    With ``n_src`` above ``n_det`` the refinement keeps ILRMA's NMF (no refit) and starts
    from the weight floor of :data:`MORE_SOURCES_WEIGHT_FLOOR`: on 3 sources from 2 mics
    that did far better than the refit (docs/FULLRANK.md); the extra sources' random
    start is drawn from ``rng``.
    """
    from ilrma_cli.engine.fullrank_compiled import iterate_compiled
    from ilrma_cli.engine.fullrank_refine import (
        MORE_SOURCES_WEIGHT_FLOOR,
        REFINE_WEIGHT_FLOOR,
        initial_model,
    )

    more = n_src > demix.shape[1]
    fullrank = initial_model(
        feats,
        demix,
        model.basis,
        model.activation,
        n_src,
        None if more else config.fullrank_basis,
        MORE_SOURCES_WEIGHT_FLOOR if more else REFINE_WEIGHT_FLOOR,
        int(rng.integers(2**32)) if more else 0,
        config.fullrank_weights == "frequency",
    )
    shifted = None if callback is None else (lambda it, loss: callback(n_done + it, loss))
    losses, n_more = iterate_compiled(
        feats, fullrank, config.fullrank_iter, shifted, config.record_loss
    )
    return fullrank, losses[1:] if config.record_loss else losses, n_more


def _initial_demix(
    observation: Observation | TapsObservation | TapsFrames,
    config: ILRMAConfig,
    given: InitialState | None,
    subspace: np.ndarray | None,
    backend: str,
) -> np.ndarray:
    """The given demixing matrices (into the subspace), else the identity then ``config.iva_iter`` IVA iterations.

    With taps they are extended with zero filters (:func:`ilrma_cli.engine.taps.extend`)
    and the IVA warm start is IVA-T: the same loop on the stacked observation.
    """
    n_freq = observation.n_freq
    n_ch = observation.n_channels
    if given is not None and given.demix is not None:
        demix = np.array(given.demix, dtype=np.complex128)
        expected = (n_freq, n_ch, n_ch if subspace is None else subspace.shape[1])
        if demix.shape != expected:
            raise ValueError(f"initial demix must have shape {expected}, got {demix.shape}")
        demix = demix if subspace is None else demix @ subspace
        if not isinstance(observation, Observation):
            demix = extend(demix, observation.width)
        return demix
    demix = init.identity(n_freq, n_ch, n_ch)
    if not isinstance(observation, Observation):
        demix = extend(demix, observation.width)
    if config.iva_iter:
        if backend == "compiled" and not isinstance(observation, Observation | TapsObservation):
            from ilrma_cli.engine import taps_compiled

            taps_compiled.iterate_iva(observation, demix, config.update, config.iva_iter, EPS)
        elif backend == "compiled":
            from ilrma_cli.engine import compiled

            assert isinstance(observation, Observation)
            compiled.iterate_iva(observation.feats, demix, config.update, config.iva_iter, EPS)
        else:
            assert isinstance(observation, Observation | TapsObservation)
            init.iva_reference(
                observation, demix, config.update, config.iva_iter, EPS, record_loss=False
            )
    return demix


def _working_scale(given: InitialState | None, mean_power: float) -> InitialState | None:
    """The NMF part of ``given`` in the working scale (variances divided by ``mean_power``)."""
    if given is None or given.basis is None:
        return None
    if given.partition is not None:
        return InitialState(
            basis=given.basis / mean_power, activation=given.activation, partition=given.partition
        )
    return InitialState(basis=given.basis / mean_power, activation=given.activation)
