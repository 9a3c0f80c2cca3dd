"""Separating mixtures to files: output planning and the per-mixture job.

``plan_outputs`` computes and checks every target path before any work starts;
``run_job`` reads one mixture, separates it, and writes all its files at once.
It is a top-level function of plain data so that a process pool can run it.
"""

from __future__ import annotations

import json
import logging
import os
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ilrma_cli.errors import IlrmaError, InputError, OutputError, ProcessingError
from ilrma_cli.evaluate import Scores, score
from ilrma_cli.figures import loss_curve_png, spectrograms_png
from ilrma_cli.io import (
    AtomicWriter,
    Audio,
    MixtureInput,
    check_audio_format,
    fit_to_subtype,
    mixture_warnings,
    read_mixture,
)
from ilrma_cli.memory import available_bytes, estimate_peak_bytes, gib
from ilrma_cli.pipeline import SeparationSettings, separate

log = logging.getLogger("ilrma")

TEMPLATE_FIELDS = {"track", "index", "ext"}


@dataclass(frozen=True)
class OutputOptions:
    """How the files of a separation are written."""

    out_dir: Path
    filename: str = "{track}/source{index}.{ext}"
    subtype: str = "float"
    clip_mode: str = "rescale"
    loss_plot: str | None = None  # None: no plot; "": default path; else a path (may hold {track})
    spectrograms: str | None = None  # the same convention
    pad: bool = False


@dataclass(frozen=True)
class Job:
    """One mixture and every file it will produce."""

    mixture: MixtureInput
    targets: tuple[Path, ...]
    loss_plot: Path | None
    spectrograms: Path | None = None
    report: Path | None = None
    references: References | None = None


@dataclass(frozen=True)
class References:
    """Reference signals to score against: ``(n_sources, n_samples)`` at the reference mic."""

    signals: np.ndarray
    rate: int
    paths: tuple[Path, ...]


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
    sources: np.ndarray | None = None
    metrics: dict | None = None
    table: str | None = None


def check_template(template: str) -> None:
    """``ValueError`` unless ``template`` uses only {track}, {index}, {ext} and has {index}."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"invalid template {template!r}: {err}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{sorted(unknown)[0]}}} in {template!r}; use {{track}}, {{index}}, {{ext}}"
        )
    if "index" not in fields:
        raise ValueError(f"{template!r} has no {{index}}: every source would get the same file")


def _side_file(targets: Sequence[Path], out_dir: Path, track: str, name: str) -> Path:
    """``<folder>/name`` beside the outputs, or ``<out_dir>/<track>_name`` when they share out_dir."""
    parent = targets[0].parent
    return parent / name if parent != out_dir else out_dir / f"{track}_{name}"


def _figure_path(
    option: str | None, name: str, targets: Sequence[Path], out_dir: Path, track: str
) -> Path | None:
    """None (not asked), the default beside the outputs (``""``), or the given path."""
    if option is None:
        return None
    return Path(option.format(track=track)) if option else _side_file(targets, out_dir, track, name)


def plan_outputs(
    mixtures: Sequence[MixtureInput],
    options: OutputOptions,
    force: bool,
    references: References | None = None,
    n_sources: int | None = None,
) -> list[Job]:
    """Every target of every mixture, checked before any work: writable, distinct, not existing.

    One file per source: ``n_sources`` if given, else one per channel. ``references``
    (for a single mixture) adds a ``report.json`` beside the outputs.
    """
    check_out_dir(options.out_dir)
    jobs = []
    for mixture in mixtures:
        targets = tuple(
            options.out_dir / options.filename.format(track=mixture.track, index=i + 1, ext="wav")
            for i in range(min(n_sources or mixture.n_channels, mixture.n_channels))
        )
        figure = partial(
            _figure_path, targets=targets, out_dir=options.out_dir, track=mixture.track
        )
        jobs.append(
            Job(
                mixture,
                targets,
                figure(options.loss_plot, "loss.png"),
                figure(options.spectrograms, "spectrograms.png"),
                figure("" if references else None, "report.json"),
                references,
            )
        )

    seen: dict[Path, str] = {}
    checked_dirs: set[Path] = set()
    inputs = {p.resolve(): p for job in jobs for p in job.mixture.paths}
    for job in jobs:
        for target in job.targets:
            check_audio_format(target, options.subtype)
        side_files = (job.loss_plot, job.spectrograms, job.report)
        for path in [*job.targets, *(p for p in side_files if p)]:
            if path.parent not in checked_dirs:
                check_out_dir(path.parent)
                checked_dirs.add(path.parent)
            key = path.resolve()
            if key in inputs:
                raise OutputError(path, "would overwrite the input file; choose another --out-dir")
            if key in seen:
                raise OutputError(
                    path,
                    f"two outputs ({seen[key]} and {job.mixture.track}) map to the same file: "
                    "put {track} in --filename",
                )
            seen[key] = job.mixture.track
    existing = [str(p) for p in seen if p.exists()]
    if existing and not force:
        listed = ", ".join(existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise OutputError(
            options.out_dir, f"outputs exist already (use --force to overwrite): {listed}"
        )
    return jobs


def check_memory(
    mixtures: Sequence[MixtureInput], settings: SeparationSettings, limit: int | None
) -> None:
    """Refuse, before any work, a mixture whose separation would need more than ``limit`` bytes.

    ``limit`` None means the memory available now; the estimate is
    :func:`ilrma_cli.memory.estimate_peak_bytes` from the file headers (a signal shorter
    than one frame counts as one frame: it is refused with its own message later).
    """
    allowed = "allowed by --max-memory" if limit is not None else "available"
    limit = available_bytes() if limit is None else limit
    if limit is None:
        return
    for mixture in mixtures:
        resolved = settings.for_rate(mixture.rate)
        assert resolved.stft is not None
        need = estimate_peak_bytes(
            mixture.n_channels, max(mixture.n_samples, resolved.stft.n_fft),
            resolved.stft.n_fft, resolved.stft.hop,
            resolved.ilrma.n_basis, resolved.ilrma.precision,
        )  # fmt: skip
        if need > limit:
            raise ProcessingError(
                f"{mixture.paths[0]}: needs about {gib(need)} of memory, more than the "
                f"{gib(limit)} {allowed}; use --max-memory SIZE to go ahead anyway, or split the file"
            )


def check_out_dir(out_dir: Path) -> None:
    """The output folder is a folder (or can be made) and is writable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(out_dir, "exists and is not a folder")
    ancestor = out_dir
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(out_dir, f"cannot be created: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(out_dir, f"cannot be created or written: {ancestor} is not writable")


def run_job(
    job: Job,
    settings: SeparationSettings,
    options: OutputOptions,
    progress: Callable[[int, float], bool | None] | None = None,
    keep_sources: bool = False,
    workers: int = 1,
) -> JobRecord:
    """Read, separate and write one mixture; all its files appear together or not at all.

    ``workers`` processes run the restarts of the separation.
    """
    record = JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths])
    start = time.perf_counter()
    audio = read_mixture(job.mixture, pad=options.pad)
    record.sample_rate, record.n_channels, record.n_samples = audio.rate, *audio.data.shape
    record.seconds["read"] = time.perf_counter() - start
    for message in mixture_warnings(audio):
        record.warnings.append(message)
        log.warning("%s: %s", audio.path, message)

    try:
        separation = separate(
            audio.data, settings, callback=progress, rate=audio.rate, workers=workers
        )
    except np.linalg.LinAlgError as err:
        raise ProcessingError(f"{audio.path}: the separation failed numerically ({err})") from None
    except ValueError as err:
        raise InputError(audio.path, str(err)) from None
    record.seconds.update(separation.seconds)
    sources = separation.sources
    check_sources(sources, audio.path)
    record.n_iter = separation.result.n_iter
    record.loss = [float(v) for v in separation.result.loss]
    record.final_loss = record.loss[-1] if record.loss else None
    resolved = separation.settings or settings
    assert resolved.stft is not None
    record.resolved = {
        "n_fft": resolved.stft.n_fft,
        "hop": resolved.stft.hop,
        "seed": separation.seed,
        "final_losses": separation.final_losses,
    }

    start = time.perf_counter()
    sources, message = fit_to_subtype(sources, options.subtype, options.clip_mode)
    if message:
        record.warnings.append(message)
        log.warning("%s: %s", audio.path, message)
    if job.references is not None:
        at_ref = sources[:, settings.ref_mic] if settings.images else sources
        scores = score_against(job.references, at_ref, audio, settings.ref_mic, record)
        record.metrics = scores.to_dict()
        record.table = scores.format_table(
            [p.name for p in job.references.paths], [p.name for p in job.targets]
        )
    with AtomicWriter() as writer:
        for target, signal in zip(job.targets, sources, strict=True):
            writer.write(target, signal, audio.rate, options.subtype)
        if job.loss_plot is not None:
            writer.write_bytes(
                job.loss_plot,
                loss_curve_png(separation.result.loss, _title(job, resolved, separation.seed)),
            )
        if job.spectrograms is not None:
            at_ref = (
                separation.sources[:, settings.ref_mic] if settings.images else separation.sources
            )
            figure = spectrograms_png(
                audio.data[settings.ref_mic],
                at_ref,
                audio.rate,
                _title(job, resolved, separation.seed),
                f"mixture (mic {settings.ref_mic})",
            )
            writer.write_bytes(job.spectrograms, figure)
        if job.report is not None:
            writer.write_bytes(job.report, _report_json(record, job, resolved))
        record.outputs = [str(p) for p in writer.commit()]
    record.seconds["write"] = time.perf_counter() - start
    record.seconds["total"] = sum(record.seconds.values())
    if keep_sources:
        record.sources = separation.sources
    return record


def score_against(
    references: References, estimates: np.ndarray, audio: Audio, ref_mic: int, record: JobRecord
) -> Scores:
    """Score ``estimates`` ``(n_sources, n_samples)``, with the mixture's ref-mic channel as baseline."""
    if references.rate != audio.rate:
        raise InputError(
            references.paths[0],
            f"sample rate {references.rate} Hz differs from {audio.path} ({audio.rate} Hz)",
        )
    if len(references.signals) != len(estimates):
        raise InputError(
            references.paths[0],
            f"{len(references.signals)} references given for {len(estimates)} separated sources",
        )
    n_samples = min(references.signals.shape[1], audio.n_samples)
    if n_samples < max(references.signals.shape[1], audio.n_samples):
        message = (
            f"references have {references.signals.shape[1]} samples, the mixture "
            f"{audio.n_samples}: scored on the first {n_samples}"
        )
        record.warnings.append(message)
        log.warning("%s: %s", audio.path, message)
    try:
        return score(
            references.signals[:, :n_samples],
            estimates[:, :n_samples],
            audio.data[ref_mic, :n_samples],
        )
    except ValueError as err:
        raise ProcessingError(f"{audio.path}: cannot score against --refs: {err}") from None


def _report_json(record: JobRecord, job: Job, settings: SeparationSettings) -> bytes:
    report = {
        "track": record.track,
        "inputs": record.inputs,
        "references": [str(p) for p in job.references.paths] if job.references else [],
        "estimates": [str(p) for p in job.targets],
        "settings": settings.to_dict(),
        "metrics": record.metrics,
    }
    return (json.dumps(report, indent=2) + "\n").encode()


def check_sources(sources: np.ndarray, path: Path) -> None:
    """Never write NaN, inf or an all-zero source."""
    if not np.all(np.isfinite(sources)):
        raise ProcessingError(f"{path}: separation produced non-finite samples; nothing written")
    flat = sources.reshape(sources.shape[0], -1)
    silent = [i + 1 for i in range(flat.shape[0]) if not np.any(flat[i])]
    if silent:
        raise ProcessingError(f"{path}: separated source(s) {silent} are silent; nothing written")


def _title(job: Job, settings: SeparationSettings, seed: int) -> str:
    s = settings
    assert s.stft is not None
    return (
        f"{job.mixture.track}: ILRMA {s.ilrma.update}, {s.ilrma.n_basis} bases, "
        f"STFT {s.stft.n_fft}/{s.stft.hop} {s.stft.window}, seed {seed}"
    )


def run_job_safely(
    job: Job, settings: SeparationSettings, options: OutputOptions, keep_sources: bool = False
) -> JobRecord:
    """:func:`run_job` for a worker process: failures come back as a record, not an exception.

    The worker logs nothing itself; the parent reports ``record.warnings`` at its own level.
    """
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    try:
        return run_job(job, settings, options, keep_sources=keep_sources)
    except IlrmaError as err:
        record = JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths])
        record.status, record.error = "error", err.format_message()
        return record
