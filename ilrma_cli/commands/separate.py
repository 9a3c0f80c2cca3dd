"""``ilrma separate``: parse, validate, call the batch layer, report."""

from __future__ import annotations

import json
import logging
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import click
from tqdm import tqdm

from ilrma_cli.audio import SUBTYPES, InputFailure, group_mixtures
from ilrma_cli.batch.job import JobRecord, run_job, run_job_safely
from ilrma_cli.batch.plan import (
    Job,
    OutputOptions,
    References,
    check_template,
    memory_problem,
    plan_outputs,
    restart_workers,
    with_memory_plan,
)
from ilrma_cli.commands.options import (
    VariadicCommand,
    VariadicOption,
    check_executor,
    check_stft_options,
    execution_options,
    pad_option,
    report_options,
    settings_options,
)
from ilrma_cli.cores import threads_per_process
from ilrma_cli.engine.threads import set_threads
from ilrma_cli.errors import IlrmaError
from ilrma_cli.execute import imap_runs, interruptible
from ilrma_cli.figures import require_matplotlib
from ilrma_cli.firstrun import announce_compiles, wants_notice
from ilrma_cli.logs import setup_logging
from ilrma_cli.longform import progress_steps
from ilrma_cli.memory import parse_size
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.signals import load_signals
from ilrma_cli.versions import versions

log = logging.getLogger("ilrma")


@click.command(cls=VariadicCommand)
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--from-list",
    "from_list",
    type=click.File("r"),
    default=None,
    metavar="FILE|-",
    help="Read more inputs from FILE (or stdin with -), one path per line.",
)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(path_type=Path),
    default=Path("separated"),
    show_default=True,
    help="Folder for the separated files.",
)
@click.option(
    "--filename",
    default="{track}/source{index}.{ext}",
    show_default=True,
    help="Output path inside --out-dir; placeholders {track} {index} {ext}.",
)
@settings_options("separate")
@click.option(
    "--subtype",
    type=click.Choice(sorted(SUBTYPES)),
    default="float",
    show_default=True,
    help="Sample format of the output files: 32-bit float (no clipping), or 16/24-bit PCM "
    "(see --clip-mode).",
)
@click.option(
    "--clip-mode",
    type=click.Choice(["rescale", "clamp"]),
    default="rescale",
    show_default=True,
    help="For PCM output beyond full scale: one gain for all, or clip.",
)
@click.option(
    "--loss-plot",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="PNG of the loss per iteration (default: loss.png beside the outputs).",
)
@click.option(
    "--spectrograms",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="PNG of the mixture and source spectrograms (default: beside the outputs).",
)
@pad_option
@execution_options(
    "mixtures in parallel (or the restarts of a single mixture)",
    "for a single mixture, its restarts on the usable cores where the memory allows; else 1",
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Memory a mixture may use (e.g. 8G); above it a long input is streamed (README, "
    "Long recordings); default: the smaller of 2G and what the system has available now.",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Go on with the other mixtures after a failure, a missing or unusable input "
    "included; each failure is reported and the exit code is 1.",
)
@click.option(
    "--refs",
    cls=VariadicOption,
    type=click.Path(path_type=Path),
    metavar="REF...",
    help="Reference source files (one per source, in any order): score the result, "
    "write report.json beside the outputs and a table on stderr.",
)
@click.option(
    "--early-refs",
    cls=VariadicOption,
    type=click.Path(path_type=Path),
    metavar="REF...",
    help="Early images of the sources (direct path + early reflections), one per source: "
    "score against them too, as --refs does (metrics_early in report.json and --json).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@report_options
def separate(
    inputs: tuple[Path, ...],
    from_list: TextIO | None,
    out_dir: Path,
    filename: str,
    subtype: str,
    clip_mode: str,
    loss_plot: str | None,
    spectrograms: str | None,
    pad: bool,
    refs: tuple[Path, ...],
    early_refs: tuple[Path, ...],
    jobs: int | None,
    scheduler: str | None,
    threads: int | None,
    max_memory: str | None,
    keep_going: bool,
    force: bool,
    quiet: bool,
    verbose: bool,
    no_progress: bool,
    as_json: bool,
    **values: Any,
) -> None:
    """Separate each mixture in INPUT... into one file per source.

    INPUT is one or more multichannel files (one mixture each), or two or more
    mono files recorded at the same time (the microphones of one mixture, in order).
    Unless -q, one line per mixture on stderr says where its files went.
    """
    setup_logging(quiet, verbose)
    inputs = inputs + read_input_list(from_list)
    if not inputs:
        raise click.UsageError("Missing argument 'INPUTS...' (or --from-list FILE)")
    check_executor(jobs, scheduler)
    check_stft_options(values["n_fft"], values["hop"])
    try:
        check_template(filename)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--filename") from None
    for name, value in (("--loss-plot", loss_plot), ("--spectrograms", spectrograms)):
        if value is not None:
            require_matplotlib(name)
    try:
        settings = SeparationSettings.from_values(values)
    except ValueError as err:  # the sizes were checked above: settings that cannot go together
        raise click.UsageError(str(err)) from None
    options = OutputOptions(out_dir, filename, subtype, clip_mode, loss_plot, spectrograms, pad)
    try:
        memory_limit = None if max_memory is None else parse_size(max_memory)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--max-memory") from None

    failed: list[JobRecord] = []
    try:
        planned = _plan(inputs, (refs, early_refs), settings, options, force, keep_going,
                        memory_limit, scheduler is None, failed)  # fmt: skip
    except IlrmaError as err:
        if as_json:
            _print_document(failed, settings, options, str(err))
        raise
    for record in failed:
        _report_failure(record.error or "failed")
    show_progress = not (no_progress or quiet)
    if jobs is None:
        jobs = 1 if scheduler is not None else restart_workers(planned, settings, memory_limit)
    parallel = len(planned) if len(planned) > 1 else settings.restarts  # what -j runs at once
    set_threads(threads_per_process(threads, min(jobs, parallel), scheduler))
    records = _run_all(planned, settings, options, jobs, scheduler, keep_going, show_progress,
                       quiet)  # fmt: skip
    for record in records:
        for option, table in (("--refs", record.table), ("--early-refs", record.table_early)):
            if table and not quiet:
                click.echo(f"{record.track}: scores in dB against {option}\n{table}", err=True)
    records = _in_input_order(failed + records, inputs)
    if as_json:
        _print_document(records, settings, options)
    if any(r.status != "ok" for r in records):
        sys.exit(1)


def read_input_list(handle: TextIO | None) -> tuple[Path, ...]:
    """Paths listed one per line; blank lines and lines starting with ``#`` are skipped."""
    if handle is None:
        return ()
    lines = (line.strip() for line in handle)
    return tuple(Path(line) for line in lines if line and not line.startswith("#"))


def _plan(inputs: tuple[Path, ...], refs: tuple[tuple[Path, ...], tuple[Path, ...]],
          settings: SeparationSettings,
          options: OutputOptions, force: bool, keep_going: bool, memory_limit: int | None,
          check_memory: bool, failed: list[JobRecord]) -> list[Job]:  # fmt: skip
    """The jobs to run; the inputs that failed already go to ``failed``, as records.

    ``refs`` are the ``--refs`` and the ``--early-refs`` files (either may be empty).
    Without ``keep_going`` the first failure is recorded and raised: nothing has been
    done yet.
    """
    mixtures, failures = group_mixtures(inputs)
    if check_memory:  # Dask workers have memory limits of their own
        for mixture in list(mixtures):
            problem = memory_problem(mixture, settings, memory_limit)
            if problem is not None:
                failures.append(InputFailure(mixture.paths, problem))
                mixtures.remove(mixture)
    failed += [
        JobRecord(
            Path(f.paths[0]).stem, [str(p) for p in f.paths], status="error", error=str(f.error)
        )  # fmt: skip
        for f in failures[: None if keep_going else 1]
    ]
    if failures and not keep_going:
        raise failures[0].error
    references: list[References | None] = []
    for option, paths in zip(("--refs", "--early-refs"), refs, strict=True):
        if paths and len(mixtures) + len(failures) > 1:
            raise click.UsageError(f"{option} scores one mixture: give a single mixture with it")
        signals, rate = load_signals(paths, settings.ref_mic) if paths else (None, 0)
        references.append(None if signals is None else References(signals, rate, paths, option))
    jobs = plan_outputs(mixtures, options, force, references[0], settings.n_sources,
                        references[1])  # fmt: skip
    return with_memory_plan(jobs, settings, memory_limit)


def _in_input_order(records: list[JobRecord], inputs: tuple[Path, ...]) -> list[JobRecord]:
    """``records`` sorted by the position of their first input among ``inputs``."""
    position: dict[str, int] = {}
    for index, path in enumerate(inputs):
        position.setdefault(str(path), index)
    return sorted(records, key=lambda r: position.get(r.inputs[0], len(inputs)))


def _run_all(jobs: list[Job], settings: SeparationSettings, options: OutputOptions,
             n_workers: int, scheduler: str | None, keep_going: bool,
             show_progress: bool, quiet: bool) -> list[JobRecord]:  # fmt: skip
    """Run every job here, in a process pool or on Dask; failures reported as they happen."""
    records: list[JobRecord] = []
    with interruptible("the mixture in progress was not written"):
        if scheduler is None and (n_workers == 1 or len(jobs) == 1):
            for job in jobs:  # one mixture: its restarts use the -j processes
                record = _run_one(job, settings, options, show_progress, n_workers)
                records.append(record)
                _report(record, quiet)
                if record.status != "ok" and not keep_going:
                    break
        else:
            records = _run_elsewhere(
                jobs, settings, options, n_workers, scheduler, keep_going, show_progress, quiet
            )
    return records


def _run_one(job: Job, settings: SeparationSettings, options: OutputOptions,
             show_progress: bool, workers: int = 1) -> JobRecord:  # fmt: skip
    bar = tqdm(total=progress_steps(job, settings, options.subtype), desc=job.mixture.track, unit="it", file=sys.stderr,
               disable=None if show_progress else True, leave=False, dynamic_ncols=True)  # fmt: skip

    def progress(iteration: int, loss: float) -> None:
        bar.update(1)
        if loss == loss:  # not NaN
            bar.set_postfix(loss=f"{loss:.6g}", refresh=False)

    announce_compiles(wants_notice())
    settings = settings.with_loss_per_iteration(options.loss_plot is not None)
    try:  # the bar shows the loss every tenth iteration (engine.types.SHOWN_LOSS_EVERY)
        return run_job(job, settings, options, None if bar.disable else progress, workers=workers)
    except IlrmaError as err:
        return JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths], status="error",
                         error=str(err))  # fmt: skip
    finally:
        bar.close()


def _run_elsewhere(jobs: list[Job], settings: SeparationSettings, options: OutputOptions,
                   n_workers: int, scheduler: str | None, keep_going: bool,
                   show_progress: bool, quiet: bool) -> list[JobRecord]:  # fmt: skip
    """Jobs in worker processes (local pool or Dask): one progress bar over mixtures."""
    records: dict[int, JobRecord] = {}
    settings = settings.with_loss_per_iteration(options.loss_plot is not None)
    run = partial(run_job_safely, settings=settings, options=options)
    with tqdm(total=len(jobs), desc="mixtures", unit="mix", file=sys.stderr,
              disable=None if show_progress else True, leave=False) as bar:  # fmt: skip
        for index, record in imap_runs(run, jobs, n_workers, scheduler):
            records[index] = record
            bar.update(1)
            for message in record.warnings:
                log.warning("%s: %s", record.inputs[0], message)
            with bar.external_write_mode(file=sys.stderr):
                _report(record, quiet)
            if record.status != "ok" and not keep_going:
                break
    return [records[i] for i in sorted(records)]


def _report(record: JobRecord, quiet: bool) -> None:
    """A finished mixture on stderr: its error, or (unless ``quiet``) where its files went."""
    if record.status != "ok":
        _report_failure(record.error or "failed")
    elif not quiet:
        folder = os.path.commonpath(record.outputs) if len(record.outputs) > 1 else None
        where = (f"{folder}{os.sep}" if folder and Path(folder).is_dir()
                 else ", ".join(record.outputs))  # fmt: skip
        count = f"{len(record.outputs)} file{'s' if len(record.outputs) != 1 else ''}"
        click.echo(f"{record.track}: {count} in {where} "
                   f"({record.seconds.get('total', 0.0):.1f} s)", err=True)  # fmt: skip


def _report_failure(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def _print_document(records: list[JobRecord], settings: SeparationSettings,
                    options: OutputOptions, error: str | None = None) -> None:  # fmt: skip
    """The one JSON document of ``--json``; ``error`` when the run stopped before any work."""
    document: dict[str, object] = {
        **({"error": error} if error is not None else {}),
        "settings": {
            **settings.to_dict(),
            "subtype": options.subtype,
            "clip_mode": options.clip_mode,
        },  # fmt: skip
        "mixtures": [
            {
                "track": r.track,
                "status": r.status,
                "error": r.error,
                "inputs": r.inputs,
                "outputs": r.outputs,
                "sample_rate": r.sample_rate,
                "n_channels": r.n_channels,
                "n_samples": r.n_samples,
                "n_iter": r.n_iter,
                "final_loss": r.final_loss,
                "resolved": r.resolved,
                "warnings": r.warnings,
                "metrics": r.metrics,
                "metrics_early": r.metrics_early,
                "seconds": r.seconds,
            }
            for r in records
        ],
        "versions": versions(),
    }
    click.echo(json.dumps(document, indent=2))
    click.get_current_context().meta["json_printed"] = True
