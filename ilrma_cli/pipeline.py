"""One separation from time signal to time signals: STFT, ILRMA, scale fix, inverse STFT.

The library entry point behind ``ilrma separate`` (no files, no printing). Memory is
bounded through the whole run: :func:`analyse` takes the STFT block by block, after
which the caller may drop the waveform; :func:`separate_analysis` releases the mixture
spectrogram once the engine is done; :class:`SourceSignals` makes the time signals
block by block from the separated spectrogram.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, partial

import numpy as np
from scipy.fft import next_fast_len
from threadpoolctl import threadpool_limits

from ilrma_cli.engine import ILRMAConfig, Result, run
from ilrma_cli.engine.ilrma import Callback
from ilrma_cli.engine.reduce import expand_demix, principal_subspace
from ilrma_cli.engine.scaling import mixing_matrices
from ilrma_cli.engine.variants import Consistency
from ilrma_cli.execute import imap_processes
from ilrma_cli.stft import SPAN_SAMPLES, Span, StftConfig, istft, istft_span, spans, stft

# "auto" STFT (QUALITY.md, "Frame length"): the longest of these frames (seconds) that leaves
# the recording at least AUTO_MIN_FRAMES frames, hop a quarter. The first is today's ~200 ms
# rounded to a power of two (4096 at 16 kHz); the others are 8192 and 11000 at 16 kHz.
AUTO_FRAME_SECONDS = (0.2, 0.512, 0.6875)
AUTO_MIN_FRAMES = 52
AUTO_HOP_DIVISOR = 4
# Defaults of `ilrma separate`, chosen on bench/quality.py (see QUALITY.md).
DEFAULT_ILRMA = ILRMAConfig(n_basis=4, n_iter=100, update="ip", iva_iter=20)


def auto_stft(rate: int, window: str = "hann", n_samples: int | None = None) -> StftConfig:
    """The default STFT for a recording of ``n_samples`` at ``rate`` Hz; hop a quarter of the frame.

    Long frames fit reverberant rooms better (the convolution is then nearly a product in
    each frequency), but ILRMA needs enough frames to estimate its demixing matrices and
    NMF activations. So the frame is the longest of :data:`AUTO_FRAME_SECONDS` that leaves
    at least :data:`AUTO_MIN_FRAMES` frames (``n_samples / hop``): at 16 kHz, 4096 below
    about 6.7 s, 8192 up to 8.9 s, 11000 from there. Without ``n_samples``, or for a
    shorter signal, the shortest: ~200 ms rounded to a power of two (4096/1024 at 16 kHz,
    8192/2048 at 44.1 and 48 kHz). The longer frames are multiples of 4 with small prime
    factors (fast FFTs).
    """
    n_fft = 2 ** max(int(round(np.log2(AUTO_FRAME_SECONDS[0] * rate))), 4)
    for seconds in AUTO_FRAME_SECONDS[1:]:
        longer = 4 * next_fast_len(int(round(seconds * rate / 4)))
        if n_samples is not None and n_samples / (longer // AUTO_HOP_DIVISOR) >= AUTO_MIN_FRAMES:
            n_fft = longer
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
class SourceSignals:
    """The separated sources as time signals, made on demand one block of samples at a time.

    ``spectra`` ``(n_sources, n_freq, n_frames)`` is the separated spectrogram before the
    scale fix and ``mixing`` ``(n_freq, n_channels, n_sources)`` the inverse demixing
    matrices: each block is projected back (to ``ref_mic``, or to every mic when it is
    None: source images) and inverted from the frames it needs alone, so no projected
    spectrogram or whole signal is ever held (:meth:`full` builds them all, for callers
    that want arrays). The numbers are those of a whole-signal projection and inverse.
    """

    spectra: np.ndarray
    mixing: np.ndarray
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
        """Frames ``span.first:span.end`` of ``source`` at the mics ``(n_outputs, n_freq, n)``.

        The same arithmetic as :func:`ilrma_cli.engine.project_back` (a product, or
        its ``einsum`` for images), so the numbers match it to the bit.
        """
        frames = self.spectra[source, :, span.first : span.end]
        if self.ref_mic is None:
            return np.einsum("fm,ft->mft", self.mixing[:, :, source], frames)
        return self.mixing[:, self.ref_mic, source][None, :, None] * frames[None]

    def full(self) -> np.ndarray:
        """Every source: ``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images."""
        out = np.empty((self.n_sources, self.n_outputs, self.n_samples))
        for source in range(self.n_sources):
            for start, block in self.blocks(source):
                out[source, :, start : start + block.shape[-1]] = block
        return out[:, 0] if self.ref_mic is not None else out


@dataclass
class Separation:
    """The outcome of a separation: its time signals (:attr:`signals`, or all at once: :attr:`sources`).

    ``result`` is the engine's (its separated spectrogram is the one ``signals`` read);
    ``settings`` are the resolved ones; ``seed`` is the seed of the kept run and
    ``final_losses`` the final loss of every restart.
    """

    signals: SourceSignals
    result: Result
    seconds: dict[str, float]
    settings: SeparationSettings | None = None
    seed: int = 0
    final_losses: list[float] = field(default_factory=list)

    @cached_property
    def sources(self) -> np.ndarray:
        """``(n_sources, n_samples)``, or ``(n_sources, n_channels, n_samples)`` as images."""
        return self.signals.full()


@dataclass
class Analysis:
    """A mixture in the STFT domain, ready for ILRMA (:func:`analyse`).

    ``obs`` ``(n_channels, n_freq, n_frames)`` (reduced to ``n_sources`` channels by
    ``basis`` ``(n_freq, n_channels, k)`` when fewer sources are asked) is handed over to
    :func:`separate_analysis`, which releases it: the caller can drop the waveform once
    this exists, and the spectrogram once the engine is done with it.
    """

    obs: np.ndarray | None
    basis: np.ndarray | None
    n_samples: int
    settings: SeparationSettings
    seconds: dict[str, float]


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
    That is :func:`analyse` then :func:`separate_analysis`; a caller that calls those two
    itself can drop the waveform in between.
    """
    return separate_analysis(analyse(mixture, settings, rate), callback, workers)


def analyse(mixture: np.ndarray, settings: SeparationSettings, rate: int | None = None) -> Analysis:
    """Check ``mixture`` ``(n_channels, n_samples)`` and take its STFT (``ValueError`` if unusable).

    The spectrogram is complex64 in single precision (what the engine needs then: its
    features are float64 whatever the input), complex128 in double.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        settings = settings.for_rate(rate)
        assert settings.stft is not None
        check_signal(mixture, settings)
        start = time.perf_counter()
        dtype = np.result_type(settings.ilrma.real_dtype, np.complex64)
        reduce = settings.n_sources is not None and settings.n_sources < mixture.shape[0]
        obs = stft(mixture, settings.stft, np.complex128 if reduce else dtype)
        basis = None
        if reduce:  # the subspace from the double-precision covariances, in any precision
            obs, basis = principal_subspace(obs, settings.n_sources)
            obs = obs.astype(dtype, copy=False)
        seconds = {"stft": time.perf_counter() - start}
        return Analysis(obs, basis, mixture.shape[1], settings, seconds)


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
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        consistency = (
            _StftConsistency(analysis.n_samples, settings.stft) if settings.consistent else None
        )
        result, seed, losses = _best_of_restarts(obs, settings, callback, consistency, workers)
        del obs
        if analysis.basis is not None:
            result = replace(result, demix=expand_demix(result.demix, analysis.basis))
        seconds["ilrma"] = time.perf_counter() - start
        mixing = mixing_matrices(result.demix)
    ref_mic = None if settings.images else settings.ref_mic
    signals = SourceSignals(result.separated, mixing, ref_mic, analysis.n_samples, settings.stft)
    return Separation(signals, result, seconds, settings, seed, losses)


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
