"""Long recordings in bounded memory: fit the demixing on frames sampled over the whole file,
then apply it while streaming the file through, block by block.

A static scene has one demixing matrix per frequency for the whole recording, and its
statistics are those of any large enough sample of frames. So :func:`fit_long` runs the
usual engine (:func:`ilrma_cli.engine.run`, every setting as given) on ``fit_frames``
frames of the whole-file STFT, taken as evenly spaced runs of ``LONG_RUN_FRAMES``
contiguous frames (real spectra, so the NMF sees real activations), and
:func:`stream_sources` then reads the file span by span (:class:`~ilrma_cli.audio.MixtureReader`),
takes exactly the whole-file STFT frames each span needs (:func:`~ilrma_cli.stft.stft_frames`;
the few frames that straddle a span's edges are taken again by the next span, so the
overlap-add across edges is the whole-file inverse's), demixes them, projects them back
(``W^{-1}`` of the fit) and inverts them. Memory depends on ``fit_frames`` and the span,
not on the length (:func:`ilrma_cli.memory.long_phase_bytes`); the output of every span
is that of the fitted filters applied to the whole-file STFT.

Models whose demixing is not a matrix per frequency (``--spatial fullrank``: Wiener
images from the whole-file model; ``--taps``: filters over past frames) run as rank-1
ILRMA here, with a warning. A moving scene needs block-online separation, not built.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from ilrma_cli.audio import PCM_PEAK, AudioWriter, MixtureReader, holds_only_zeros
from ilrma_cli.batch.job import JobRecord, LevelFit, _check_finite, _title, unstorable
from ilrma_cli.batch.plan import Job, OutputOptions
from ilrma_cli.dereverb import stage_config
from ilrma_cli.engine import Callback, Result, mixing_matrices
from ilrma_cli.engine.observation import demix_apply
from ilrma_cli.errors import InputError, ProcessingError
from ilrma_cli.memory import LONG_RUN_FRAMES
from ilrma_cli.pipeline import (
    check_layout,
    check_live,
    project_frames,
    restart_runs,
    restart_steps,
)
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.stft import (
    SPAN_SAMPLES,
    Span,
    frame_samples,
    istft_span,
    n_frames,
    spans,
    stft_frames,
)

log = logging.getLogger("ilrma")
T = TypeVar("T")


def fit_runs(total: int, fit_frames: int, run: int = LONG_RUN_FRAMES) -> list[tuple[int, int]]:
    """Evenly spaced runs ``[first, end)`` of contiguous frames among ``total``, ``fit_frames`` in all
    (fewer only when they would overlap); all frames when ``fit_frames >= total``, still in
    runs of ``run`` frames: they are read one at a time (:func:`fit_long`), and the memory
    estimate counts one run's samples and frames (:func:`ilrma_cli.memory.long_phase_bytes`;
    one run of every frame held 146 MiB more on 10 minutes of 2 channels)."""
    if fit_frames >= total:
        return [(first, min(first + run, total)) for first in range(0, total, run)]
    n_runs = -(-fit_frames // run)
    starts = [k * total // n_runs for k in range(n_runs)] + [total]
    lengths = [(k + 1) * fit_frames // n_runs - k * fit_frames // n_runs for k in range(n_runs)]
    return [(starts[k], min(starts[k] + lengths[k], starts[k + 1])) for k in range(n_runs)]


def long_settings(settings: SeparationSettings) -> tuple[SeparationSettings, str | None]:
    """``settings`` as the long path runs them, and the warning when that changes them.

    The full-rank model and taps have no per-frequency demixing matrix to stream with:
    they fall back to rank-1 ILRMA without taps.
    """
    config = settings.ilrma
    if config.spatial == "rank1" and not config.taps:
        return settings, None
    dropped = "the full-rank model" if config.spatial != "rank1" else "--taps"
    rank1 = replace(config, spatial="rank1", taps=0)
    message = (f"a long input is streamed, which {dropped} cannot be: separated with rank-1 "
               "ILRMA (--max-memory keeps a file whole up to that size)")  # fmt: skip
    return replace(settings, ilrma=rank1), message


@dataclass
class LongFit:
    """The demixing fitted on ``fit_frames`` frames: the engine's ``result`` (of the kept
    ``seed``), the settings that ran and what the sampled frames showed. ``filters`` holds
    every restart's demixing ``W`` ``(n_freq, n_sources, n_channels)`` and mixing matrices
    ``W^{-1}`` ``(n_freq, n_channels, n_sources)``, their sources in the kept run's order:
    the sources streamed are their mean (:func:`ilrma_cli.pipeline.mean_images`)."""

    result: Result
    filters: list[tuple[np.ndarray, np.ndarray]]
    settings: SeparationSettings
    seed: int
    final_losses: list[float]
    fit_frames: int
    warnings: list[str]


def fit_long(
    reader: MixtureReader,
    settings: SeparationSettings,
    fit_frames: int,
    callback: Callback | None = None,
    workers: int = 1,
) -> LongFit:
    """Fit the demixing on ``fit_frames`` frames of the whole-file STFT of ``reader``'s mixture.

    ``settings`` are resolved (STFT for the whole length, :func:`long_settings`); raises
    ``ValueError`` for a mixture they cannot separate (silence is judged on the samples read).
    """
    settings = settings.for_rate(reader.rate, reader.n_samples)
    if settings.n_sources is not None and settings.n_sources > reader.n_channels:
        raise ValueError(
            f"--n-sources {settings.n_sources} above the {reader.n_channels} channels needs the "
            "full-rank model, which a long input streamed in bounded memory cannot use "
            "(a larger --max-memory keeps it whole)"
        )
    if settings.dereverb:
        raise ValueError(
            "--dereverb needs the whole file in memory, which a long input streamed in "
            "bounded memory cannot give (a larger --max-memory keeps it whole)"
        )
    settings, fallback = long_settings(settings)
    config = settings.stft
    assert config is not None
    check_layout(reader.n_channels, reader.n_samples, settings)
    runs = fit_runs(n_frames(reader.n_samples, config), fit_frames)
    reduce = settings.n_sources is not None and settings.n_sources < reader.n_channels
    dtype = np.complex128 if reduce else settings.ilrma.complex_dtype
    m = reader.n_channels
    obs = np.empty((m, config.n_freq, sum(end - first for first, end in runs)), dtype)
    live = np.zeros(m, bool)
    same = np.ones((m, m), bool)
    column = 0
    for first, end in runs:
        chunk = reader.read(*frame_samples(first, end, reader.n_samples, config))
        live |= chunk.any(axis=1)
        same &= (chunk[:, None] == chunk[None]).all(axis=2)
        obs[:, :, column : column + end - first] = stft_frames(
            chunk, first, end, reader.n_samples, config, dtype
        )
        column += end - first
    check_live(list(live), settings, " in the frames read for the fit")
    warnings = [fallback] if fallback else []
    warnings += [
        f"channels {a} and {b} are identical: they carry no spatial information"
        for a in range(m)
        for b in range(a + 1, m)
        if live[a] and same[a, b]
    ]
    with threadpool_limits(limits=1, user_api="blas"):
        fits = restart_runs(obs, settings, callback, workers)
        demixes = [r.demix[:, order] for r, order in zip(fits.results, fits.orders, strict=True)]
        filters = [(demix, mixing_matrices(demix)) for demix in demixes]
    result, seed, losses = fits.kept_result, fits.kept_seed, fits.losses
    return LongFit(result, filters, settings, seed, losses, obs.shape[-1], warnings)


def stream_spans(n_samples: int, settings: SeparationSettings) -> list[Span]:
    """The spans :func:`stream_sources` makes, in order (``settings`` resolved)."""
    assert settings.stft is not None
    total = n_frames(n_samples, settings.stft)
    return spans(n_samples, total, settings.stft, SPAN_SAMPLES)


def stream_sources(
    reader: MixtureReader, fit: LongFit, ref_mic: int | None
) -> Iterator[tuple[Span, list[np.ndarray]]]:
    """Each span and its samples of every source, ``(n_outputs, span.stop - span.start)`` each.

    The frames a span needs are read and transformed alone (:func:`~ilrma_cli.stft.stft_frames`),
    demixed by each of ``fit``'s filters, projected to ``ref_mic`` (None: every mic),
    averaged over the filters and inverted; the numbers are those of the fitted demixing
    applied to the whole-file STFT.
    """
    config = fit.settings.stft
    assert config is not None
    dtype = fit.settings.ilrma.complex_dtype
    for span in stream_spans(reader.n_samples, fit.settings):
        chunk = reader.read(*frame_samples(span.first, span.end, reader.n_samples, config))
        frames = stft_frames(chunk, span.first, span.end, reader.n_samples, config, dtype)
        projected: list[np.ndarray] = []
        for k, (demix, mixing) in enumerate(fit.filters):
            separated = demix_apply(demix, frames, dtype)
            for s in range(separated.shape[0]):
                images = project_frames(separated[s], mixing[:, :, s], ref_mic)
                if k == 0:
                    projected.append(images)
                else:
                    projected[s] += images
        if len(fit.filters) > 1:
            for images in projected:
                images /= len(fit.filters)
        yield span, [istft_span(images, span, config) for images in projected]


def progress_steps(job: Job, settings: SeparationSettings, subtype: str) -> int:
    """Steps of the job's progress bar: the iterations of the ``--dereverb`` stage and of
    every restart, then for the long path each span of each pass over the file (PCM
    output measures its peak in a first pass)."""
    if job.fit_frames is None:
        stage = stage_config(settings).total_iter if settings.dereverb else 0
        return stage + restart_steps(settings)
    resolved, _ = long_settings(settings.for_rate(job.mixture.rate, job.mixture.n_samples))
    passes = 1 if subtype == "float" else 2
    n_spans = len(stream_spans(job.mixture.n_samples, resolved))
    return restart_steps(resolved) + passes * n_spans


def run_long_job(
    job: Job,
    settings: SeparationSettings,
    options: OutputOptions,
    progress: Callable[[int, float], bool | None] | None = None,
    workers: int = 1,
) -> JobRecord:
    """:func:`ilrma_cli.batch.job.run_job` for a long input: fit, then stream into the targets.

    All files appear together at the end or not at all (an error, a truncated file or
    an interrupt mid-stream leaves nothing). ``progress`` sees the iterations, then one
    step per span (with a NaN loss). ``--refs``, ``--early-refs`` and ``--spectrograms``
    need whole signals and are refused.
    """
    assert job.fit_frames is not None
    path = job.mixture.paths[0]
    if job.references is not None or job.early_references is not None or job.spectrograms:
        raise ProcessingError(
            f"{path}: too long to hold whole, so it is streamed, and --refs, --early-refs and "
            "--spectrograms need whole signals: drop them or raise --max-memory"
        )
    record = JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths])
    start = time.perf_counter()
    with MixtureReader(job.mixture, options.pad) as reader:
        record.sample_rate, record.n_channels = reader.rate, reader.n_channels
        record.n_samples = reader.n_samples
        try:
            fit = fit_long(reader, settings, job.fit_frames, progress, workers)
        except np.linalg.LinAlgError as err:
            raise ProcessingError(f"{path}: the separation failed numerically ({err})") from None
        except ValueError as err:
            raise InputError(path, str(err)) from None
        record.seconds["fit"] = time.perf_counter() - start
        for message in fit.warnings:
            record.warnings.append(message)
            log.warning("%s: %s", path, message)
        record.n_iter = fit.result.n_iter
        record.loss = [float(v) for v in fit.result.loss]
        record.final_loss = record.loss[-1] if record.loss else None
        assert fit.settings.stft is not None
        record.resolved = {
            "n_fft": fit.settings.stft.n_fft,
            "hop": fit.settings.stft.hop,
            "seed": fit.seed,
            "kept_weights": None,  # the long path runs rank 1
            "final_losses": fit.final_losses,
            "path": "long",
            "fit_frames": fit.fit_frames,
        }
        start = time.perf_counter()
        ticked = _ticker(progress, record.n_iter * settings.restarts)
        ref_mic = None if settings.images else settings.ref_mic
        peak, n_over = 0.0, 0
        if options.subtype != "float":  # one gain for every source: the peak comes first
            for _, blocks in ticked(stream_sources(reader, fit, ref_mic)):
                for block in blocks:
                    _check_finite(block, path)
                    peak = max(peak, float(np.max(np.abs(block))))
                    n_over += int(np.count_nonzero(np.abs(block) > PCM_PEAK))
        level = LevelFit(options.subtype, options.clip_mode, peak, n_over)
        n_outputs = 1 if ref_mic is not None else reader.n_channels
        with AudioWriter() as writer:
            peaks = [0.0] * len(job.targets)
            with contextlib.ExitStack() as stack:
                sinks = [
                    stack.enter_context(writer.stream(t, reader.rate, n_outputs, options.subtype))
                    for t in job.targets
                ]
                for _, blocks in ticked(stream_sources(reader, fit, ref_mic)):
                    for source, (sink, block) in enumerate(zip(sinks, blocks, strict=True)):
                        _check_finite(block, path)
                        peaks[source] = max(peaks[source], float(np.max(np.abs(block))))
                        sink.write(level(block))
            silent = [s for s, sink in enumerate(sinks) if holds_only_zeros(sink.temporary)]
            reason = unstorable(silent, peaks, options.subtype)
            if reason:
                raise ProcessingError(f"{path}: {reason}; nothing written")
            if level.message:
                record.warnings.append(level.message)
                log.warning("%s: %s", path, level.message)
            if job.loss_plot is not None:
                from ilrma_cli.figures import loss_curve_png

                title = _title(job, fit.settings, fit.seed) + f", fit on {fit.fit_frames} frames"
                writer.write_bytes(job.loss_plot, loss_curve_png(fit.result.loss, title))
            record.outputs = [str(p) for p in writer.commit()]
    record.seconds["stream"] = time.perf_counter() - start
    record.seconds["total"] = sum(record.seconds.values())
    return record


def _ticker(
    progress: Callable[[int, float], bool | None] | None, done: int
) -> Callable[[Iterable[T]], Iterator[T]]:
    """Wraps iterables so that each item they give is one more step of ``progress`` after ``done``."""
    steps = itertools.count(done + 1)

    def ticked(items: Iterable[T]) -> Iterator[T]:
        for item in items:
            yield item
            if progress is not None:
                progress(next(steps), float("nan"))

    return ticked
