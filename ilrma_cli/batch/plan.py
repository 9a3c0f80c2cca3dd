"""Planning a batch before any work: mixtures, their output files, checks.

:func:`plan_outputs` computes and checks every target path (writable, distinct, not
existing) before any separation starts; :func:`memory_problem` refuses a mixture too
large for the memory allowed. Nothing here reads audio samples or writes a file.
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from ilrma_cli.audio import MixtureInput, check_audio_format
from ilrma_cli.cores import usable_cores
from ilrma_cli.engine import choose_backend
from ilrma_cli.errors import InputError, OutputError, ProcessingError
from ilrma_cli.execute import can_start_processes
from ilrma_cli.memory import (
    LONG_PATH_CAP,
    MIN_FIT_FRAMES,
    available_bytes,
    estimate_peak_bytes,
    gib,
    long_fit_frames,
)
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.stft import n_frames

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
    early_references: References | None = None  # the early images (direct path + 50 ms)
    fit_frames: int | None = None  # the long path's (ilrma_cli.longform); None: the whole file


@dataclass(frozen=True)
class References:
    """Reference signals to score against: ``(n_sources, n_samples)`` at the reference mic.

    ``option`` names them in messages: ``--refs`` (the source images) or ``--early-refs``.
    """

    signals: np.ndarray
    rate: int
    paths: tuple[Path, ...]
    option: str = "--refs"

    def check(self, n_sources: int, mixture: MixtureInput) -> None:
        """``InputError`` unless there is one reference per separated source at the mixture's rate."""
        if self.rate != mixture.rate:
            raise InputError(
                self.paths[0],
                f"sample rate {self.rate} Hz differs from {mixture.paths[0]} ({mixture.rate} Hz)",
            )
        if len(self.signals) != n_sources:
            raise InputError(
                self.paths[0],
                f"{len(self.signals)} references given for {n_sources} separated sources",
            )


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
    early_references: References | None = None,
) -> list[Job]:
    """Every target of every mixture, checked before any work: writable, distinct, not existing.

    One file per source: ``n_sources`` if given (more than the channels only separate with
    the full-rank model; the separation refuses them otherwise), else one per channel. ``references`` or
    ``early_references`` (for a single mixture; one per source, at its rate) add a
    ``report.json`` beside the outputs.
    """
    check_out_dir(options.out_dir)
    jobs = []
    for mixture in mixtures:
        targets = tuple(
            options.out_dir / options.filename.format(track=mixture.track, index=i + 1, ext="wav")
            for i in range(n_sources or mixture.n_channels)
        )
        for given in (references, early_references):
            if given is not None:
                given.check(len(targets), mixture)
        scored = references is not None or early_references is not None
        figure = partial(
            _figure_path, targets=targets, out_dir=options.out_dir, track=mixture.track
        )
        jobs.append(
            Job(
                mixture,
                targets,
                figure(options.loss_plot, "loss.png"),
                figure(options.spectrograms, "spectrograms.png"),
                figure("" if scored else None, "report.json"),
                references,
                early_references,
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


def memory_problem(
    mixture: MixtureInput, settings: SeparationSettings, limit: int | None
) -> ProcessingError | None:
    """Why ``mixture`` must not start: not even the long path fits in ``limit`` bytes.

    ``limit`` None means the memory available now; the estimates come from the file
    headers (:func:`long_fit`).
    """
    fit = long_fit(mixture, settings, limit)
    if fit is None or fit >= MIN_FIT_FRAMES:
        return None
    allowed = "allowed by --max-memory" if limit is not None else "available (2 GiB at most)"
    need = whole_file_bytes(mixture, settings)
    return ProcessingError(
        f"{mixture.paths[0]}: needs about {gib(need)} of memory, more than the "
        f"{gib(switch_limit(limit))} {allowed}; use --max-memory SIZE to go ahead anyway, "
        "or split the file"
    )


def restart_workers(jobs: list[Job], settings: SeparationSettings, limit: int | None) -> int:
    """Processes for the restarts when ``-j`` is not given: one per usable core, up to the
    restarts, for a single mixture held whole whose estimate times that count fits in the
    memory a separation may use (:func:`switch_limit`), where processes can start; else 1
    (the sweeps then share the cores as threads).

    On short files threads may scale poorly (the sweeps are short) while separate runs do
    not: ``bench/filing_time.py`` measured the defaults on the 10-s sample 20-28 % faster in
    two processes than in one with two threads on one 2-core host (session 11), and the
    same on another (session 12); the output is the same.
    """
    if len(jobs) != 1 or jobs[0].fit_frames is not None or settings.restarts < 2:
        return 1
    workers = min(settings.restarts, usable_cores())
    if workers < 2 or workers * whole_file_bytes(jobs[0].mixture, settings) > switch_limit(limit):
        return 1
    return workers if can_start_processes() else 1


def switch_limit(limit: int | None) -> int:
    """Bytes a separation may use: ``limit`` (``--max-memory``), else the smaller of
    ``LONG_PATH_CAP`` and the memory available now."""
    if limit is not None:
        return limit
    available = available_bytes()
    return LONG_PATH_CAP if available is None else min(LONG_PATH_CAP, available)


def whole_file_bytes(mixture: MixtureInput, settings: SeparationSettings) -> int:
    """:func:`ilrma_cli.memory.estimate_peak_bytes` of ``mixture`` held whole (a signal
    shorter than one frame counts as one frame: it is refused with its own message later)."""
    resolved = settings.for_rate(mixture.rate, mixture.n_samples, mixture.n_channels)
    assert resolved.stft is not None
    return estimate_peak_bytes(
        mixture.n_channels, max(mixture.n_samples, resolved.stft.n_fft),
        resolved.stft.n_fft, resolved.stft.hop,
        resolved.ilrma.n_basis, resolved.ilrma.precision, choose_backend(resolved.ilrma),
        resolved.ilrma.spatial, resolved.ilrma.taps, resolved.ilrma.fullrank_basis,
        resolved.n_sources, resolved.images, dereverb_stage(mixture.rate, resolved),
        resolved.restarts,
    )  # fmt: skip


def dereverb_stage(rate: int, settings: SeparationSettings) -> tuple[int, int, int] | None:
    """``(taps, n_fft, hop)`` of the ``--dereverb`` stage, None without one."""
    if not settings.dereverb:
        return None
    config = settings.dereverb_stft(rate)
    return settings.dereverb, config.n_fft, config.hop


def long_fit(mixture: MixtureInput, settings: SeparationSettings, limit: int | None) -> int | None:
    """The rule: None (the whole file in memory) when its estimate fits :func:`switch_limit`,
    else the frames the long path fits its demixing on within it (below ``MIN_FIT_FRAMES``:
    not even that fits)."""
    allowed = switch_limit(limit)
    if whole_file_bytes(mixture, settings) <= allowed:
        return None
    resolved = settings.for_rate(mixture.rate, mixture.n_samples, mixture.n_channels)
    assert resolved.stft is not None
    config, engine = resolved.stft, resolved.ilrma
    total = n_frames(max(mixture.n_samples, config.n_fft), config)
    backend = choose_backend(replace(engine, spatial="rank1", taps=0))
    return long_fit_frames(mixture.n_channels, config.n_fft, config.hop, engine.n_basis,
                           engine.precision, backend, allowed, total,
                           resolved.restarts)  # fmt: skip


def with_memory_plan(
    jobs: Sequence[Job], settings: SeparationSettings, limit: int | None
) -> list[Job]:
    """``jobs`` with the path each takes (:func:`long_fit`), at least ``MIN_FIT_FRAMES`` frames."""
    planned = []
    for job in jobs:
        fit = long_fit(job.mixture, settings, limit)
        planned.append(replace(job, fit_frames=None if fit is None else max(fit, MIN_FIT_FRAMES)))
    return planned


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
