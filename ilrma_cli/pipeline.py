"""One separation from time signal to time signals: STFT, ILRMA, scale fix, inverse STFT.

The library entry point behind ``ilrma separate`` (no files, no printing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from ilrma_cli.engine import ILRMAConfig, Result, project_back, run
from ilrma_cli.engine.ilrma import Callback
from ilrma_cli.engine.reduce import expand_demix, principal_subspace
from ilrma_cli.engine.variants import Consistency
from ilrma_cli.execute import imap_processes
from ilrma_cli.stft import StftConfig, istft, stft

# "auto" STFT: frame length ~ AUTO_FRAME_SECONDS rounded to a power of two, hop a quarter.
AUTO_FRAME_SECONDS = 0.2
AUTO_HOP_DIVISOR = 4
# Defaults of `ilrma separate`, chosen on bench/quality.py (see QUALITY.md).
DEFAULT_ILRMA = ILRMAConfig(n_basis=4, n_iter=100, update="ip", iva_iter=20)


def auto_stft(rate: int, window: str = "hann") -> StftConfig:
    """The default STFT for ``rate`` Hz: 4096/1024 at 16 kHz, 8192/2048 at 44.1 and 48 kHz.

    The frame is about 200 ms rounded to a power of two, the hop a quarter of it.
    """
    n_fft = 2 ** max(int(round(np.log2(AUTO_FRAME_SECONDS * rate))), 4)
    return StftConfig(n_fft, n_fft // AUTO_HOP_DIVISOR, window)


@dataclass(frozen=True)
class SeparationSettings:
    """Everything that decides a separation's output (besides the input).

    ``stft=None`` is "auto": :func:`auto_stft` of the input's sample rate, with ``window``.
    ``restarts`` runs seeds ``seed, seed + 1, ...`` and keeps the lowest final
    negative log-likelihood. ``n_sources`` below the channel count separates in
    the principal subspace (:mod:`ilrma_cli.engine.reduce`).
    """

    stft: StftConfig | None = None
    window: str = "hann"
    ilrma: ILRMAConfig = DEFAULT_ILRMA
    ref_mic: int = 0
    images: bool = False
    seed: int = 0
    restarts: int = 1
    consistent: bool = False
    n_sources: int | None = None

    def __post_init__(self) -> None:
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")
        if self.n_sources is not None and self.n_sources < 2:
            raise ValueError(f"n_sources must be >= 2, got {self.n_sources}")

    def for_rate(self, rate: int | None) -> SeparationSettings:
        """These settings with the "auto" STFT resolved for ``rate`` Hz."""
        if self.stft is not None:
            return self
        if rate is None:
            raise ValueError("the automatic STFT size needs the sample rate")
        return replace(self, stft=auto_stft(rate, self.window))

    def to_dict(self) -> dict[str, object]:
        stft_part: dict[str, object] = (
            asdict(self.stft)
            if self.stft
            else {"n_fft": "auto", "hop": "auto", "window": self.window}
        )
        return {
            **stft_part,
            **asdict(self.ilrma),
            "ref_mic": self.ref_mic,
            "images": self.images,
            "seed": self.seed,
            "restarts": self.restarts,
            "consistent": self.consistent,
            "n_sources": self.n_sources,
        }


@dataclass
class Separation:
    """Separated signals: ``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images.

    ``settings`` are the resolved ones; ``seed`` is the seed of the kept run and
    ``final_losses`` the final loss of every restart.
    """

    sources: np.ndarray
    result: Result
    seconds: dict[str, float]
    settings: SeparationSettings | None = None
    seed: int = 0
    final_losses: list[float] = field(default_factory=list)


def check_signal(mixture: np.ndarray, settings: SeparationSettings) -> None:
    """Refuse a mixture ``(n_channels, n_samples)`` the settings cannot separate (``ValueError``)."""
    n_channels, n_samples = mixture.shape
    if n_channels < 2:
        raise ValueError(f"ILRMA needs at least 2 channels, got {n_channels}")
    if not 0 <= settings.ref_mic < n_channels:
        raise ValueError(
            f"--ref-mic {settings.ref_mic} does not exist: the input has {n_channels} channels"
        )
    if settings.n_sources is not None and settings.n_sources > n_channels:
        raise ValueError(
            f"--n-sources {settings.n_sources} needs at least as many channels; the input has {n_channels}"
        )
    if settings.stft is not None and n_samples < settings.stft.n_fft:
        raise ValueError(
            f"signal of {n_samples} samples is shorter than one STFT frame (n_fft = {settings.stft.n_fft})"
        )
    if not np.any(mixture):
        raise ValueError("the input is digital silence: there is nothing to separate")
    silent = [c + 1 for c in range(n_channels) if not np.any(mixture[c])]
    n_live = n_channels - len(silent)
    if silent and (settings.n_sources or n_channels) > n_live:
        hint = f"; use --n-sources {n_live}" if n_live >= 2 else ""
        raise ValueError(
            f"channel(s) {silent} are digital silence: the {n_live} live channel(s) can "
            f"separate at most {n_live} source(s){hint}"
        )


def separate(
    mixture: np.ndarray,
    settings: SeparationSettings,
    callback: Callback | None = None,
    rate: int | None = None,
    workers: int = 1,
) -> Separation:
    """Separate ``mixture`` ``(n_channels, n_samples)`` into ``settings.n_sources`` (default: channels).

    ``rate`` (Hz) is needed only for the "auto" STFT; ``workers`` processes run the restarts.
    BLAS runs on one thread here: the engine's matrix products are small, so threads only
    cost time, and the result is then the same wherever it runs (``-j``, Dask, in-process).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _separate(mixture, settings, callback, rate, workers)


def _separate(
    mixture: np.ndarray,
    settings: SeparationSettings,
    callback: Callback | None,
    rate: int | None,
    workers: int,
) -> Separation:
    settings = settings.for_rate(rate)
    assert settings.stft is not None
    check_signal(mixture, settings)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    obs = stft(mixture, settings.stft)
    basis = None
    if settings.n_sources is not None and settings.n_sources < mixture.shape[0]:
        obs, basis = principal_subspace(obs, settings.n_sources)
    seconds["stft"] = time.perf_counter() - start

    start = time.perf_counter()
    consistency = _StftConsistency(mixture.shape[1], settings.stft) if settings.consistent else None
    result, seed, losses = _best_of_restarts(obs, settings, callback, consistency, workers)
    if basis is not None:
        result = replace(result, demix=expand_demix(result.demix, basis))
    seconds["ilrma"] = time.perf_counter() - start

    start = time.perf_counter()
    ref_mic = None if settings.images else settings.ref_mic
    scaled = project_back(result.separated, result.demix, ref_mic)
    sources = istft(scaled, mixture.shape[1], settings.stft)
    seconds["istft"] = time.perf_counter() - start
    return Separation(sources, result, seconds, settings, seed, losses)


def _best_of_restarts(
    obs: np.ndarray,
    settings: SeparationSettings,
    callback: Callback | None,
    consistency: Consistency | None,
    workers: int,
) -> tuple[Result, int, list[float]]:
    """Run seeds ``seed .. seed + restarts - 1``; keep the lowest final loss (a blind criterion).

    With ``workers > 1`` the restarts run in that many processes (same numbers);
    ``callback`` then sees each run's losses when it finishes and cannot stop it.
    """
    config = settings.ilrma
    if settings.restarts > 1 and not config.record_loss:
        config = replace(config, record_loss=True)
    seeds = [settings.seed + k for k in range(settings.restarts)]
    if workers > 1 and len(seeds) > 1:
        results = _run_in_processes(obs, config, seeds, consistency, workers, callback)
    else:
        results = (run(obs, config, seed, callback, consistency=consistency) for seed in seeds)
    best: Result | None = None
    best_seed, best_loss, losses = settings.seed, np.inf, []
    for seed, result in zip(seeds, results, strict=True):
        final = float(result.loss[-1]) if result.loss.size else float("nan")
        losses.append(final)
        if best is None or final < best_loss:
            best, best_seed, best_loss = result, seed, final
    assert best is not None
    return best, best_seed, losses


def _run_in_processes(
    obs: np.ndarray,
    config: ILRMAConfig,
    seeds: list[int],
    consistency: Consistency | None,
    workers: int,
    callback: Callback | None,
) -> Iterator[Result]:
    """:func:`run` for each seed in a process pool (one BLAS thread per process), in seed order."""
    one_seed = partial(run, obs, config, consistency=consistency)
    results = dict(imap_processes(one_seed, seeds, workers))
    for index in range(len(seeds)):
        result = results[index]
        if callback is not None:
            for it, loss in enumerate(result.loss[1:], start=1):
                callback(it, float(loss))
        yield result


@dataclass(frozen=True)
class _StftConsistency:
    """``y -> STFT(iSTFT(y))`` for spectrograms ``(n_sources, n_freq, n_frames)`` (picklable)."""

    n_samples: int
    config: StftConfig

    def __call__(self, spec: np.ndarray) -> np.ndarray:
        return stft(istft(spec, self.n_samples, self.config), self.config)
