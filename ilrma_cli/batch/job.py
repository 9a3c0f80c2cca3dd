"""The per-mixture job of a batch: read, separate, write all its files at once.

:func:`run_job` is a top-level function of plain data so that a process pool or Dask
can run it; :func:`run_job_safely` returns a failure as a record instead of raising.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ilrma_cli.audio import (
    FLOAT_MAX,
    PCM_PEAK,
    AudioWriter,
    holds_only_zeros,
    mixture_warnings,
    read_mixture,
)
from ilrma_cli.batch.plan import Job, OutputOptions, References
from ilrma_cli.errors import IlrmaError, InputError, ProcessingError
from ilrma_cli.execute import stop_started_processes
from ilrma_cli.figures import loss_curve_png, spectrograms_png
from ilrma_cli.pipeline import SourceSignals, analyse, separate_analysis, start_restart_workers
from ilrma_cli.settings import SeparationSettings

if TYPE_CHECKING:
    from ilrma_cli.metrics import Scores

log = logging.getLogger("ilrma")


@dataclass
class JobRecord:
    """What a job did, for the summary and ``--json``."""

    track: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    sample_rate: int | None = None
    n_channels: int | None = None
    n_samples: int | None = None
    n_iter: int | None = None
    final_loss: float | None = None
    loss: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resolved: dict[str, object] = field(default_factory=dict)  # auto STFT, kept seed, restarts
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict | None = None
    table: str | None = None
    metrics_early: dict | None = None  # against --early-refs
    table_early: str | None = None


def run_job(
    job: Job,
    settings: SeparationSettings,
    options: OutputOptions,
    progress: Callable[[int, float], bool | None] | None = None,
    workers: int = 1,
) -> JobRecord:
    """Read, separate and write one mixture; all its files appear together or not at all.

    ``workers`` processes run the restarts of the separation. Memory stays bounded:
    the waveform is dropped once its STFT exists (only the reference mic's channel is
    kept, for ``--refs``, ``--early-refs`` or ``--spectrograms``), and the sources are
    written block by block (:func:`write_sources`). A job with ``fit_frames`` takes the
    long path (:func:`ilrma_cli.longform.run_long_job`).
    """
    if job.fit_frames is not None:
        from ilrma_cli.longform import run_long_job  # it builds on this module

        return run_long_job(job, settings, options, progress, workers)
    start_restart_workers(settings, workers, progress is not None)
    try:
        return _run_whole_job(job, settings, options, progress, workers)
    finally:
        stop_started_processes()


def _run_whole_job(
    job: Job,
    settings: SeparationSettings,
    options: OutputOptions,
    progress: Callable[[int, float], bool | None] | None,
    workers: int,
) -> JobRecord:
    """:func:`run_job` held whole."""
    record = JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths])
    start = time.perf_counter()
    audio = read_mixture(job.mixture, pad=options.pad, narrow=True)
    path, rate = audio.path, audio.rate
    record.sample_rate, record.n_channels, record.n_samples = rate, *audio.data.shape
    record.seconds["read"] = time.perf_counter() - start
    for message in mixture_warnings(audio):
        record.warnings.append(message)
        log.warning("%s: %s", path, message)
    try:
        analysis = analyse(audio.data, settings, rate=rate, callback=progress)
        scored = job.references is not None or job.early_references is not None
        wanted = scored or job.spectrograms is not None
        mixture_ref = audio.data[settings.ref_mic].astype(np.float64) if wanted else None
        del audio  # the STFT holds the mixture from here on
        separation = separate_analysis(analysis, callback=progress, workers=workers)
    except np.linalg.LinAlgError as err:
        raise ProcessingError(f"{path}: the separation failed numerically ({err})") from None
    except ValueError as err:
        raise InputError(path, str(err)) from None
    record.seconds.update(separation.seconds)
    record.n_iter = separation.result.n_iter
    record.loss = [float(v) for v in separation.result.loss]
    record.final_loss = record.loss[-1] if record.loss else None
    resolved = separation.settings or settings
    assert resolved.stft is not None
    record.resolved = {
        "n_fft": resolved.stft.n_fft,
        "hop": resolved.stft.hop,
        "seed": separation.seed,
        "kept_weights": separation.kept_weights,
        "final_losses": separation.final_losses,
        "path": "whole",
    }

    start = time.perf_counter()
    with AudioWriter() as writer:
        level_message, at_ref = write_sources(
            writer, job.targets, separation.signals, rate, options, path,
            settings.ref_mic if mixture_ref is not None else None,
        )  # fmt: skip
        if level_message:
            record.warnings.append(level_message)
            log.warning("%s: %s", path, level_message)
        if scored:
            assert at_ref is not None and mixture_ref is not None
            _score_job(job, at_ref.fitted, mixture_ref, path, record)
        if job.loss_plot is not None:
            writer.write_bytes(
                job.loss_plot,
                loss_curve_png(
                    separation.result.loss,
                    _title(job, resolved, separation.seed),
                    resolved.ilrma.n_iter if separation.result.fullrank is not None else None,
                ),
            )
        if job.spectrograms is not None:
            assert at_ref is not None and mixture_ref is not None
            figure = spectrograms_png(
                mixture_ref,
                at_ref.unfitted,
                rate,
                _title(job, resolved, separation.seed),
                f"mixture (mic {settings.ref_mic})",
            )
            writer.write_bytes(job.spectrograms, figure)
        if job.report is not None:
            writer.write_bytes(job.report, _report_json(record, job, resolved))
        record.outputs = [str(p) for p in writer.commit()]
    record.seconds["istft"] = separation.signals.seconds
    record.seconds["write"] = time.perf_counter() - start - separation.signals.seconds
    record.seconds["total"] = sum(record.seconds.values())
    return record


@dataclass(frozen=True)
class AtReference:
    """The sources at the reference mic ``(n_sources, n_samples)``, as separated and as stored."""

    unfitted: np.ndarray
    fitted: np.ndarray


def write_sources(
    writer: AudioWriter,
    targets: Sequence[Path],
    signals: SourceSignals,
    rate: int,
    options: OutputOptions,
    path: Path,
    ref_mic: int | None = None,
) -> tuple[str | None, AtReference | None]:
    """Write source ``i`` to ``targets[i]`` through ``writer``, block by block.

    PCM output first measures the overall peak in a pass of its own (the inverse STFT
    is cheap next to ILRMA) so that one gain fits every source (:class:`LevelFit`).
    Refuses (``ProcessingError``) non-finite samples and sources whose stored file
    holds only zeros (read back: a quiet source can round to silence in PCM). Returns
    the level message, and the sources at mic ``ref_mic`` if asked (figures, scores).
    """
    peak, n_over = 0.0, 0
    if options.subtype != "float":
        for source in range(signals.n_sources):
            for _, block in signals.blocks(source):
                _check_finite(block, path)
                peak = max(peak, float(np.max(np.abs(block))))
                n_over += int(np.count_nonzero(np.abs(block) > PCM_PEAK))
    fit = LevelFit(options.subtype, options.clip_mode, peak, n_over)
    row = 0 if signals.ref_mic is not None else ref_mic
    kept = None if ref_mic is None else np.empty((signals.n_sources, signals.n_samples))
    peaks, stored_silent = [], []
    for source, target in enumerate(targets):
        peaks.append(0.0)
        with writer.stream(target, rate, signals.n_outputs, options.subtype) as sink:
            for start, block in signals.blocks(source):
                _check_finite(block, path)
                peaks[source] = max(peaks[source], float(np.max(np.abs(block))))
                if kept is not None:
                    kept[source, start : start + block.shape[-1]] = block[row]
                sink.write(fit(block))
        if holds_only_zeros(sink.temporary):
            stored_silent.append(source)
    reason = unstorable(stored_silent, peaks, options.subtype)
    if reason:
        raise ProcessingError(f"{path}: {reason}; nothing written")
    at_ref = None if kept is None else AtReference(kept, fit(kept))
    return fit.message, at_ref


class LevelFit:
    """Makes separated signals storable as ``subtype`` without silent clipping, block by block.

    Float keeps everything. For PCM beyond full scale, ``rescale`` applies ONE gain to
    every source of the mixture (relative levels stay), which is why the overall
    ``peak`` must be known before the first block, and ``clamp`` clips. :attr:`message`
    says what was done.
    """

    def __init__(self, subtype: str, clip_mode: str, peak: float, n_over: int) -> None:
        """``peak``: the largest magnitude in all the signals; ``n_over``: their samples above ``PCM_PEAK``."""
        self.subtype, self.peak, self.n_over = subtype, peak, n_over
        over = subtype != "float" and peak > PCM_PEAK
        self.gain = PCM_PEAK / peak if over and clip_mode == "rescale" else None
        self.clamp = over and clip_mode == "clamp"

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``block`` (any shape) as it will be stored (a new array when it changes)."""
        if self.gain is not None:
            return block * self.gain
        if self.clamp:
            return np.clip(block, -PCM_PEAK, PCM_PEAK)
        return block

    @property
    def message(self) -> str | None:
        if self.gain is not None:
            return (
                f"peak {self.peak:.3f} exceeds full scale for {self.subtype}: every source "
                f"scaled by {self.gain:.4f} ({20 * np.log10(self.gain):.2f} dB), the same gain for all"
            )
        if self.clamp:
            return (
                f"peak {self.peak:.3f} exceeds full scale for {self.subtype}: "
                f"{self.n_over} samples clamped"
            )
        return None


def _check_finite(block: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(block)):
        raise ProcessingError(f"{path}: separation produced non-finite samples; nothing written")


def unstorable(stored_silent: list[int], peaks: list[float], subtype: str) -> str | None:
    """Why the stored files do not hold the sources of peak ``peaks``: those of
    ``stored_silent`` (0-based) hold only zeros, or in float some overflow to infinity
    (a float file holds float32); None if they hold them."""
    parts = [_silence(stored_silent, peaks, subtype)] if stored_silent else []
    loud = [i + 1 for i, peak in enumerate(peaks) if subtype == "float" and peak > FLOAT_MAX]
    if loud:
        parts.append(
            f"separated source(s) {loud} are too loud for float (peak {max(peaks):.2g}) and "
            "would be stored as infinity"
        )
    return "; ".join(parts) or None


def _silence(sources: list[int], peaks: list[float], subtype: str) -> str:
    """Why the stored files of ``sources`` (0-based) hold only zeros."""
    silent = [i + 1 for i in sources if peaks[i] == 0]
    rounded = [i + 1 for i in sources if peaks[i] > 0]
    parts = [f"separated source(s) {silent} are silent"] if silent else []
    if rounded:
        loudest = max(peaks[i - 1] for i in rounded)
        hint = ": use --subtype float" if subtype != "float" else ""
        parts.append(
            f"separated source(s) {rounded} are too quiet for {subtype} (peak {loudest:.2g}) "
            f"and would be stored as silence{hint}"
        )
    return "; ".join(parts)


def _score_job(
    job: Job, estimates: np.ndarray, mixture_ref: np.ndarray, path: Path, record: JobRecord
) -> None:
    """Scores and tables of ``record`` against the job's references and early references."""
    names = [p.name for p in job.targets]
    if job.references is not None:
        scores = score_against(job.references, estimates, mixture_ref, path, record)
        record.metrics = scores.to_dict()
        record.table = scores.format_table([p.name for p in job.references.paths], names)
    if job.early_references is not None:
        scores = score_against(job.early_references, estimates, mixture_ref, path, record)
        record.metrics_early = scores.to_dict()
        record.table_early = scores.format_table(
            [p.name for p in job.early_references.paths], names
        )


def score_against(
    references: References,
    estimates: np.ndarray,
    mixture_ref: np.ndarray,
    path: Path,
    record: JobRecord,
) -> Scores:
    """Score ``estimates`` ``(n_sources, n_samples)``, with the mixture's ref-mic channel as baseline.

    ``mixture_ref`` ``(n_samples,)`` is that channel of the mixture read from ``path``; the
    count and rate of ``references`` were checked when the job was planned
    (:meth:`References.check`). Different lengths are scored on the common start, with a
    warning.
    """
    n_mixture = len(mixture_ref)
    n_samples = min(references.signals.shape[1], n_mixture)
    if n_samples < max(references.signals.shape[1], n_mixture):
        message = (
            f"the {references.option} files have {references.signals.shape[1]} samples, the mixture "
            f"{n_mixture}: scored on the first {n_samples}"
        )
        record.warnings.append(message)
        log.warning("%s: %s", path, message)
    from ilrma_cli.metrics import (
        score,  # scipy.optimize and BSS Eval: only runs with references load them
    )

    try:
        return score(
            references.signals[:, :n_samples], estimates[:, :n_samples], mixture_ref[:n_samples]
        )
    except ValueError as err:
        raise ProcessingError(f"{path}: cannot score against {references.option}: {err}") from None


def _report_json(record: JobRecord, job: Job, settings: SeparationSettings) -> bytes:
    report = {
        "track": record.track,
        "inputs": record.inputs,
        "references": [str(p) for p in job.references.paths] if job.references else [],
        "early_references": (
            [str(p) for p in job.early_references.paths] if job.early_references else []
        ),
        "estimates": [str(p) for p in job.targets],
        "settings": settings.to_dict(),
        "metrics": record.metrics,
        "metrics_early": record.metrics_early,
    }
    return (json.dumps(report, indent=2) + "\n").encode()


def _title(job: Job, settings: SeparationSettings, seed: int) -> str:
    s = settings
    assert s.stft is not None
    refined = ""
    if s.ilrma.spatial == "fullrank":
        refined = f", then full rank ({s.ilrma.fullrank_basis} bases)"
    return (
        f"{job.mixture.track}: ILRMA {s.ilrma.update}, {s.ilrma.n_basis} bases{refined}, "
        f"STFT {s.stft.n_fft}/{s.stft.hop} {s.stft.window}, seed {seed}"
    )


def run_job_safely(job: Job, settings: SeparationSettings, options: OutputOptions) -> JobRecord:
    """:func:`run_job` for a worker process: failures come back as a record, not an exception.

    The worker logs nothing itself; the parent reports ``record.warnings`` at its own level.
    """
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    try:
        return run_job(job, settings, options)
    except IlrmaError as err:
        record = JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths])
        record.status, record.error = "error", str(err)
        return record
