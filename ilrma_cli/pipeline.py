"""One separation from time signal to time signals: STFT, ILRMA, scale fix, inverse STFT.

The library entry point behind ``ilrma separate`` (no files, no printing). Memory is
bounded through the whole run: :func:`analyse` takes the STFT block by block, after
which the caller may drop the waveform; :func:`separate_analysis` releases the mixture
spectrogram once the engine is done; :class:`SourceSignals` makes the time signals
block by block from the separated spectrogram.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial

import numpy as np
from threadpoolctl import threadpool_limits

from ilrma_cli.consensus import medoid, pairing, signature
from ilrma_cli.dereverb import dereverberate
from ilrma_cli.engine import (
    Callback,
    ILRMAConfig,
    Result,
    mixing_matrices,
    run,
)
from ilrma_cli.engine.images import separated_spectrogram, source_images
from ilrma_cli.execute import imap_processes, report_progress, start_processes
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.stft import SPAN_SAMPLES, Span, StftConfig, istft_span, spans, stft


@dataclass
class SourceSignals:
    """The separated sources as time signals, made on demand one block of samples at a time.

    ``spectra`` ``(n_sources, n_freq, n_frames)`` is the separated spectrogram before the
    scale fix and ``mixing`` ``(n_freq, n_channels, n_sources)`` the inverse demixing
    matrices: each block is projected back (to ``ref_mic``, or to every mic when it is
    None: source images) and inverted from the frames it needs alone, so no projected
    spectrogram or whole signal is ever held (:meth:`full` builds them all, for callers
    that want arrays). The numbers are those of a whole-signal projection and inverse.
    With ``mixing`` None, ``spectra`` ``(n_sources, n_outputs, n_freq, n_frames)`` are
    already at the mics (the full-rank model's Wiener images).
    """

    spectra: np.ndarray
    mixing: np.ndarray | None
    ref_mic: int | None
    n_samples: int
    config: StftConfig
    seconds: float = 0.0  # spent making blocks so far

    @property
    def n_sources(self) -> int:
        return self.spectra.shape[0]

    @property
    def n_outputs(self) -> int:
        """Channels of each source's signal: 1, or every mic for images."""
        if self.mixing is None:
            return self.spectra.shape[1]
        return 1 if self.ref_mic is not None else self.mixing.shape[1]

    def blocks(self, source: int, length: int = SPAN_SAMPLES) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, samples)`` of ``source`` in order: ``(n_outputs, n)`` blocks of about ``length``."""
        spectrum = self.spectra[source]
        for span in spans(self.n_samples, spectrum.shape[-1], self.config, length):
            start = time.perf_counter()
            block = istft_span(self._projected(source, span), span, self.config)
            self.seconds += time.perf_counter() - start
            yield span.start, block

    def _projected(self, source: int, span: Span) -> np.ndarray:
        """Frames ``span.first:span.end`` of ``source`` at the mics ``(n_outputs, n_freq, n)``."""
        if self.mixing is None:
            return self.spectra[source, :, :, span.first : span.end]
        frames = self.spectra[source, :, span.first : span.end]
        return project_frames(frames, self.mixing[:, :, source], self.ref_mic)

    def full(self) -> np.ndarray:
        """Every source: ``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images."""
        out = np.empty((self.n_sources, self.n_outputs, self.n_samples))
        for source in range(self.n_sources):
            for start, block in self.blocks(source):
                out[source, :, start : start + block.shape[-1]] = block
        return out[:, 0] if self.ref_mic is not None else out


def project_frames(frames: np.ndarray, mixing: np.ndarray, ref_mic: int | None) -> np.ndarray:
    """One source's frames ``(n_freq, n)`` at the mics ``(n_outputs, n_freq, n)``.

    ``mixing`` ``(n_freq, n_channels)`` is its column of ``W^{-1}``; ``ref_mic`` None gives
    every mic (images). The same arithmetic as :func:`ilrma_cli.engine.project_back` (a
    product, or its ``einsum`` for images), so the numbers match it to the bit.
    """
    if ref_mic is None:
        return np.einsum("fm,ft->mft", mixing, frames)
    return mixing[:, ref_mic][None, :, None] * frames[None]


@dataclass
class Separation:
    """The outcome of a separation: its time signals (:attr:`signals`, or all at once: :attr:`sources`).

    ``result`` is the engine's, of the kept run (with ``--restarts``, the medoid, whose
    sources the others are paired with; ``signals`` are then the mean of every run's);
    ``settings`` are the resolved ones; ``seed`` is the seed of the kept run,
    ``kept_weights`` its full-rank spatial weights (:attr:`Restarts.kept_weights`) and
    ``final_losses`` the final loss of every restart.
    """

    signals: SourceSignals
    result: Result
    seconds: dict[str, float]
    settings: SeparationSettings | None = None
    seed: int = 0
    final_losses: list[float] = field(default_factory=list)
    kept_weights: str | None = None

    @cached_property
    def sources(self) -> np.ndarray:
        """``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images."""
        return self.signals.full()


@dataclass
class Analysis:
    """A mixture in the STFT domain, ready for ILRMA (:func:`analyse`).

    ``obs`` ``(n_channels, n_freq, n_frames)`` is handed over to :func:`separate_analysis`,
    which releases it: the caller can drop the waveform once this exists, and the
    spectrogram once the engine is done with it.
    """

    obs: np.ndarray | None
    n_samples: int
    settings: SeparationSettings
    seconds: dict[str, float]


def check_signal(mixture: np.ndarray, settings: SeparationSettings) -> None:
    """Refuse a mixture ``(n_channels, n_samples)`` the settings cannot separate (``ValueError``)."""
    check_layout(mixture.shape[0], mixture.shape[1], settings)
    check_live([bool(np.any(channel)) for channel in mixture], settings)


def check_layout(n_channels: int, n_samples: int, settings: SeparationSettings) -> None:
    """Refuse channel counts, ``--ref-mic``, ``--n-sources`` and lengths that cannot go together."""
    if n_channels < 2:
        raise ValueError(f"ILRMA needs at least 2 channels, got {n_channels}")
    if not 0 <= settings.ref_mic < n_channels:
        raise ValueError(
            f"--ref-mic {settings.ref_mic} does not exist: the input has {n_channels} channels"
        )
    if (
        settings.n_sources is not None
        and settings.n_sources > n_channels
        and settings.ilrma.spatial != "fullrank"
    ):
        raise ValueError(
            f"--n-sources {settings.n_sources} needs at least as many channels (the input has "
            f"{n_channels}), or --spatial fullrank"
        )
    if settings.stft is not None and n_samples < settings.stft.n_fft:
        raise ValueError(
            f"signal of {n_samples} samples is shorter than one STFT frame (n_fft = {settings.stft.n_fft})"
        )


def check_live(live: Sequence[bool], settings: SeparationSettings, where: str = "") -> None:
    """Refuse digital silence, and silent channels when they leave too few live ones.

    ``live[c]``: channel ``c`` holds a non-zero sample (``where``: in which samples, if not all).
    """
    n_channels = len(live)
    if not any(live):
        raise ValueError(f"the input is digital silence{where}: there is nothing to separate")
    silent = [c for c in range(n_channels) if not live[c]]
    n_live = n_channels - len(silent)
    if silent and min(settings.n_sources or n_channels, n_channels) > n_live:
        hint = f"; use --n-sources {n_live}" if n_live >= 2 else ""
        raise ValueError(
            f"channel(s) {silent} are digital silence{where}: the {n_live} live channel(s) can "
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
    That is :func:`analyse` then :func:`separate_analysis`; a caller that calls those two
    itself can drop the waveform in between.
    """
    return separate_analysis(analyse(mixture, settings, rate, callback), callback, workers)


def analyse(
    mixture: np.ndarray,
    settings: SeparationSettings,
    rate: int | None = None,
    callback: Callback | None = None,
) -> Analysis:
    """Check ``mixture`` ``(n_channels, n_samples)`` and take its STFT (``ValueError`` if unusable).

    With ``settings.dereverb`` the STFT is of the dereverberated mixture
    (:func:`ilrma_cli.dereverb.dereverberate`, whose iterations ``callback`` sees).

    The spectrogram is complex64 in single precision (what the engine needs then: its
    features are float64 whatever the input), complex128 in double or when the engine
    reduces it to fewer sources (the principal subspace is taken in double precision).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        settings = settings.for_rate(rate, mixture.shape[1], mixture.shape[0])
        assert settings.stft is not None
        check_signal(mixture, settings)
        seconds: dict[str, float] = {}
        if settings.dereverb:
            if rate is None:
                raise ValueError("--dereverb needs the sample rate (its frame is 0.2 s)")
            start = time.perf_counter()
            mixture = dereverberate(mixture, settings, rate, callback)
            seconds["dereverb"] = time.perf_counter() - start
        start = time.perf_counter()
        reduce = settings.n_sources is not None and settings.n_sources < mixture.shape[0]
        dtype = np.complex128 if reduce else settings.ilrma.complex_dtype
        obs = stft(mixture, settings.stft, dtype)
        seconds["stft"] = time.perf_counter() - start
        return Analysis(obs, mixture.shape[1], settings, seconds)


def separate_analysis(
    analysis: Analysis, callback: Callback | None = None, workers: int = 1
) -> Separation:
    """ILRMA on ``analysis`` (which gives up its spectrogram), then the scale fix.

    BLAS runs on one thread here: the engine's matrix products are small, so threads only
    cost time, and the result is then the same wherever it runs (``-j``, Dask, in-process).
    The time signals are left to :class:`SourceSignals`, block by block.
    """
    obs, analysis.obs = analysis.obs, None
    if obs is None:
        raise ValueError("this analysis has been separated already")
    settings, seconds = analysis.settings, dict(analysis.seconds)
    assert settings.stft is not None
    ref_mic = None if settings.images else settings.ref_mic
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        runs = restart_runs(obs, settings, callback, workers)
        result = runs.kept_result
        mixing: np.ndarray | None = None  # None: the spectra are at the mics already
        if len(runs.results) > 1:
            spectra = mean_images(obs, runs, ref_mic)
        elif result.fullrank is not None:  # the Wiener images
            spectra = _images(obs, result, ref_mic)
        else:  # projected back block by block by SourceSignals
            spectra, mixing = result.separated, mixing_matrices(result.demix)
        del obs
        seconds["ilrma"] = time.perf_counter() - start
    signals = SourceSignals(spectra, mixing, ref_mic, analysis.n_samples, settings.stft)
    return Separation(
        signals, result, seconds, settings, runs.kept_seed, runs.losses, runs.kept_weights
    )


def restart_steps(settings: SeparationSettings) -> int:
    """The iterations the restarts of a separation report through its callback."""
    return settings.ilrma.total_iter * settings.restarts


@dataclass
class Restarts:
    """The runs of ``--restarts`` (seeds ``seed, seed + 1, ...``); of several, only the kept
    one with its separated spectrogram (:func:`_held_run`).

    ``kept`` indexes the medoid (:mod:`ilrma_cli.consensus`; of two runs the lower final
    loss): the run the others are paired with, whose result and seed a separation reports.
    ``orders[r][i]`` is the source of run ``r`` paired with source ``i`` of the kept run;
    ``configs[r]`` its engine settings (:func:`restart_config`).
    """

    results: list[Result]
    seeds: list[int]
    losses: list[float]
    kept: int
    orders: list[list[int]]
    configs: list[ILRMAConfig]

    @property
    def kept_result(self) -> Result:
        return self.results[self.kept]

    @property
    def kept_seed(self) -> int:
        return self.seeds[self.kept]

    @property
    def kept_weights(self) -> str | None:
        """The kept run's full-rank spatial weights, ``shared`` or ``frequency`` (under
        ``alternate``, its turn), so that ``--seed`` :attr:`kept_seed` ``--restarts 1
        --fullrank-weights`` this reruns it; None for the rank-1 model."""
        config = self.configs[self.kept]
        return config.fullrank_weights if config.spatial == "fullrank" else None


def restart_runs(
    obs: np.ndarray,
    settings: SeparationSettings,
    callback: Callback | None,
    workers: int,
) -> Restarts:
    """Run seeds ``seed .. seed + restarts - 1`` on ``obs`` ``(n_channels, n_freq, n_frames)``
    and pair their sources with the medoid's.

    The separation is then the mean of the paired runs (:func:`mean_images`): independent
    local optima err differently, so the mean beats keeping the medoid on every dev case,
    in mean and in the worst window of seeds (QUALITY.md, session 9). Of several runs only
    the kept one keeps its separated spectrogram; the others' is formed again from ``obs``
    when their images are (:func:`_held_run`). With ``workers > 1`` the restarts run in that
    many processes (same numbers); ``callback`` then sees their iterations as they happen,
    interleaved, and cannot stop them.
    """
    seeds = [settings.seed + k for k in range(settings.restarts)]
    jobs = [(seed, restart_config(settings.ilrma, k)) for k, seed in enumerate(seeds)]
    if len(jobs) == 1:
        seed, config = jobs[0]
        result = run(obs, config, seed, callback, n_sources=settings.n_sources)
        loss = float(result.loss[-1]) if result.loss.size else float("nan")
        order = [list(range(result.separated.shape[0]))]
        return Restarts([result], seeds, [loss], 0, order, [config])
    assert settings.stft is not None
    held = partial(_held_run, obs, settings.n_sources, settings.ref_mic, settings.stft)
    if workers > 1:
        runs = list(_run_in_processes(held, jobs, workers, callback))
    else:
        runs = [held(job, callback) for job in jobs]
    results, signatures = [r for r, _ in runs], [sig for _, sig in runs]
    losses = [float(r.loss[-1]) if r.loss.size else float("nan") for r in results]
    # Two runs agree equally with each other: the lower loss decides which leads.
    kept = int(np.argmin(losses)) if len(results) == 2 else medoid(signatures)
    orders = [pairing(signatures[kept], other)[1] for other in signatures]
    results[kept] = replace(results[kept], separated=separated_spectrogram(obs, results[kept]))
    return Restarts(results, seeds, losses, kept, orders, [config for _, config in jobs])


def restart_config(config: ILRMAConfig, index: int) -> ILRMAConfig:
    """The engine settings of restart ``index`` (0, 1, ...): with ``fullrank_weights=
    "alternate"`` the even restarts share their spatial weights over frequency and the odd
    ones have a set per frequency, so that the mean of the runs holds both models (ahead of
    shared weights alone on 7 of 9 dev cases, 39 of 46 other rooms and 5 of 6 rooms with more
    sources than mics: QUALITY.md, "Per-frequency spatial weights"); else ``config``."""
    if config.fullrank_weights != "alternate":
        return config
    return replace(config, fullrank_weights="frequency" if index % 2 else "shared")


def _held_run(
    obs: np.ndarray,
    n_sources: int | None,
    ref_mic: int,
    stft_config: StftConfig,
    job: tuple[int, ILRMAConfig],
    callback: Callback | None = None,
) -> tuple[Result, np.ndarray]:
    """One restart (``job``: its seed and engine settings) and its signature
    (:func:`ilrma_cli.consensus.signature`), the result without its separated spectrogram
    (zero frames) where that is ``demix @ obs`` (:func:`ilrma_cli.engine.images.separated_spectrogram`
    forms it again), so that the runs held until all are done stay small."""
    seed, config = job
    result = run(obs, config, seed, callback, n_sources=n_sources)
    sig = signature(obs, result, ref_mic, stft_config)
    if result.filters is None:
        separated = result.separated
        result = replace(result, separated=np.empty((*separated.shape[:2], 0), separated.dtype))
    return result, sig


def mean_images(obs: np.ndarray, runs: Restarts, ref_mic: int | None) -> np.ndarray:
    """The mean over the runs of their paired sources at the mics ``(n_src, n_out, n_freq, n_frames)``
    (``n_out`` 1 at ``ref_mic``, every mic when it is None), from the mixture ``obs``."""
    total: np.ndarray | None = None
    for result, order in zip(runs.results, runs.orders, strict=True):
        images = _images(obs, result, ref_mic)
        if total is None:
            total = images[order]
            continue
        for source, paired in enumerate(order):
            total[source] += images[paired]
    assert total is not None
    total /= len(runs.results)
    return total


def _images(obs: np.ndarray, result: Result, ref_mic: int | None) -> np.ndarray:
    """One run's sources at the mics ``(n_src, n_out, n_freq, n_frames)``."""
    images = source_images(obs, result, ref_mic)
    return images if ref_mic is None else images[:, None]


# What a restart needs in a worker, imported as the worker starts (start_restart_workers).
RESTART_MODULES = (
    "ilrma_cli.pipeline",
    "ilrma_cli.engine.compiled",
    "ilrma_cli.engine.fullrank_compiled",
)


def start_restart_workers(settings: SeparationSettings, workers: int, with_progress: bool) -> None:
    """Start the processes of the next :func:`restart_runs` with these arguments now (a
    callback given to it: ``with_progress``), so that their start-up overlaps the reading
    and the STFT (:func:`ilrma_cli.execute.start_processes`; ended by
    :func:`ilrma_cli.execute.stop_started_processes` if unused). None where it runs in
    this process."""
    size = min(workers, settings.restarts)  # imap_processes' pool for the restarts' seeds
    if size > 1:
        start_processes(size, with_progress, RESTART_MODULES)


def _run_in_processes(
    held: Callable[..., tuple[Result, np.ndarray]],
    jobs: list[tuple[int, ILRMAConfig]],
    workers: int,
    callback: Callback | None,
) -> Iterator[tuple[Result, np.ndarray]]:
    """``held(job)`` (:func:`_held_run`) for each restart in a process pool (one BLAS thread
    per process), in order; ``callback`` sees every run's iterations as they happen."""
    work = held if callback is None else partial(_reporting_run, held)
    runs = dict(imap_processes(work, jobs, workers, callback))
    for index in range(len(jobs)):
        yield runs[index]


def _reporting_run(
    held: Callable[..., tuple[Result, np.ndarray]], job: tuple[int, ILRMAConfig]
) -> tuple[Result, np.ndarray]:
    """``held(job)`` in a worker, its iterations reported to the parent's callback."""
    return held(job, report_progress)
