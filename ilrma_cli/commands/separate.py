"""``ilrma separate``: parse, validate, call the batch layer, report."""

from __future__ import annotations

import json
import logging
import sys
from functools import partial
from pathlib import Path
from typing import TextIO

import click
from tqdm import tqdm

from ilrma_cli.batch import (
    Job,
    JobRecord,
    OutputOptions,
    References,
    check_memory,
    check_template,
    plan_outputs,
    run_job,
    run_job_safely,
)
from ilrma_cli.commands.options import (
    HOP,
    IVA_ITER,
    N_BASIS,
    N_FFT,
    N_ITER,
    UPDATE,
    WINDOW,
    VariadicCommand,
    VariadicOption,
    check_executor,
    execution_options,
    no_normalize_option,
    pad_option,
    ref_mic_option,
    report_options,
)
from ilrma_cli.engine import ILRMAConfig
from ilrma_cli.engine.models import MODELS
from ilrma_cli.errors import IlrmaError
from ilrma_cli.execute import imap_runs, interruptible
from ilrma_cli.figures import require_matplotlib
from ilrma_cli.firstrun import announce_compiles, wants_notice
from ilrma_cli.io import SUBTYPES, plan_mixtures
from ilrma_cli.logs import setup_logging
from ilrma_cli.memory import parse_size
from ilrma_cli.pipeline import AUTO_HOP_DIVISOR, DEFAULT_ILRMA, SeparationSettings
from ilrma_cli.signals import load_signals
from ilrma_cli.stft import StftConfig
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
@N_FFT.option(None, default_text="auto: about 200 ms rounded to a power of two, 4096 at 16 kHz")
@HOP.option(None, default_text="n_fft / 4")
@WINDOW.option("hann")
@N_BASIS.option(DEFAULT_ILRMA.n_basis)
@N_ITER.option(DEFAULT_ILRMA.n_iter)
@UPDATE.option(DEFAULT_ILRMA.update)
@click.option(
    "--precision",
    type=click.Choice(["double", "single"]),
    default=DEFAULT_ILRMA.precision,
    show_default=True,
    help="Spectrograms in complex64 instead of complex128: about a fifth less memory "
    "(the default Gaussian model always iterates in double).",
)
@IVA_ITER.option(DEFAULT_ILRMA.iva_iter)
@no_normalize_option
@ref_mic_option
@click.option("--images", is_flag=True, help="Write each source as heard at every microphone.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--restarts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs with seeds seed, seed+1, ...; keeps the lowest final negative log-likelihood.",
)
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="gauss",
    show_default=True,
    help="Source model: Gaussian NMF, Student's t NMF (t-ILRMA), or bases shared by all sources (partition).",
)
@click.option(
    "--dof",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Degrees of freedom of --model t.",
)
@click.option(
    "--consistent", is_flag=True, help="Consistent ILRMA: enforce STFT consistency each iteration."
)
@click.option(
    "--n-sources",
    type=click.IntRange(min=2),
    default=None,
    help="Sources to separate when fewer than the channels (PCA reduction)  [default: one per channel]",
)
@click.option("--subtype", type=click.Choice(sorted(SUBTYPES)), default="float", show_default=True)
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
@execution_options
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Memory a mixture may use (e.g. 8G); default: what the system has available now.",
)
@click.option("--keep-going", is_flag=True, help="Go on with the other mixtures after a failure.")
@click.option(
    "--refs",
    cls=VariadicOption,
    type=click.Path(path_type=Path),
    metavar="REF...",
    help="Reference source files (one per source, in any order): score the result, "
    "write report.json beside the outputs and a table on stderr.",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@report_options
def separate(
    inputs: tuple[Path, ...],
    from_list: TextIO | None,
    out_dir: Path,
    filename: str,
    n_fft: int | None,
    hop: int | None,
    window: str,
    n_basis: int,
    n_iter: int,
    update: str,
    precision: str,
    iva_iter: int,
    no_normalize: bool,
    ref_mic: int,
    images: bool,
    seed: int,
    restarts: int,
    model: str,
    dof: float,
    consistent: bool,
    n_sources: int | None,
    subtype: str,
    clip_mode: str,
    loss_plot: str | None,
    spectrograms: str | None,
    pad: bool,
    refs: tuple[Path, ...],
    jobs: int,
    scheduler: str | None,
    max_memory: str | None,
    keep_going: bool,
    force: bool,
    quiet: bool,
    verbose: bool,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Separate each mixture in INPUT... into one file per source.

    INPUT is one or more multichannel files (one mixture each), or two or more
    mono files recorded at the same time (the microphones of one mixture, in order).
    """
    setup_logging(quiet, verbose)
    inputs = inputs + read_input_list(from_list)
    if not inputs:
        raise click.UsageError("Missing argument 'INPUTS...' (or --from-list FILE)")
    check_executor(jobs, scheduler)
    if hop is not None and n_fft is None:
        raise click.BadParameter(
            "--hop needs --n-fft (the automatic STFT sets both)", param_hint="--hop"
        )
    if n_fft is not None and hop is None:
        hop = max(n_fft // AUTO_HOP_DIVISOR, 1)
    if n_fft is not None and hop is not None and hop > n_fft:
        raise click.BadParameter(f"{hop} is larger than --n-fft {n_fft}", param_hint="--hop")
    try:
        check_template(filename)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--filename") from None
    for name, value in (("--loss-plot", loss_plot), ("--spectrograms", spectrograms)):
        if value is not None:
            require_matplotlib(name)
    try:
        settings = SeparationSettings(
            stft=None if n_fft is None or hop is None else StftConfig(n_fft, hop, window),
            window=window,
            ilrma=ILRMAConfig(
                n_basis=n_basis,
                n_iter=n_iter,
                update=update,
                precision=precision,
                normalize=not no_normalize,
                model=model,
                dof=dof,
                iva_iter=iva_iter,
            ),
            ref_mic=ref_mic,
            images=images,
            seed=seed,
            restarts=restarts,
            consistent=consistent,
            n_sources=n_sources,
        )
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--hop") from None
    options = OutputOptions(out_dir, filename, subtype, clip_mode, loss_plot, spectrograms, pad)

    try:
        memory_limit = None if max_memory is None else parse_size(max_memory)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--max-memory") from None

    mixtures = plan_mixtures(inputs)
    if scheduler is None:  # Dask workers have memory limits of their own
        check_memory(mixtures, settings, memory_limit)
    references = None
    if refs:
        if len(mixtures) > 1:
            raise click.UsageError("--refs scores one mixture: give a single mixture with it")
        signals, rate = load_signals(refs, ref_mic)
        references = References(signals, rate, refs)
    planned = plan_outputs(mixtures, options, force, references, n_sources)
    show_progress = not (no_progress or quiet)
    records = _run_all(planned, settings, options, jobs, scheduler, keep_going, show_progress)

    for record in records:
        if record.table and not quiet:
            click.echo(f"{record.track}: scores in dB against --refs\n{record.table}", err=True)
        if record.status == "ok":
            log.info("%s: wrote %s (%.1f s)", record.track, ", ".join(record.outputs),
                     record.seconds.get("total", 0.0))  # fmt: skip
    if as_json:
        click.echo(json.dumps(_document(records, settings, options), indent=2))
    if any(r.status != "ok" for r in records):
        sys.exit(1)


def read_input_list(handle: TextIO | None) -> tuple[Path, ...]:
    """Paths listed one per line; blank lines and lines starting with ``#`` are skipped."""
    if handle is None:
        return ()
    lines = (line.strip() for line in handle)
    return tuple(Path(line) for line in lines if line and not line.startswith("#"))


def _run_all(jobs: list[Job], settings: SeparationSettings, options: OutputOptions,
             n_workers: int, scheduler: str | None, keep_going: bool,
             show_progress: bool) -> list[JobRecord]:  # fmt: skip
    """Run every job here, in a process pool or on Dask; failures reported as they happen."""
    records: list[JobRecord] = []
    with interruptible("the mixture in progress was not written"):
        if scheduler is None and (n_workers == 1 or len(jobs) == 1):
            for job in jobs:  # one mixture: its restarts use the -j processes
                record = _run_one(job, settings, options, show_progress, n_workers)
                records.append(record)
                if record.status != "ok" and not keep_going:
                    break
        else:
            records = _run_elsewhere(
                jobs, settings, options, n_workers, scheduler, keep_going, show_progress
            )
    return records


def _run_one(job: Job, settings: SeparationSettings, options: OutputOptions,
             show_progress: bool, workers: int = 1) -> JobRecord:  # fmt: skip
    bar = tqdm(total=settings.ilrma.n_iter * settings.restarts, desc=job.mixture.track, unit="it", file=sys.stderr,
               disable=None if show_progress else True, leave=False, dynamic_ncols=True)  # fmt: skip

    def progress(iteration: int, loss: float) -> None:
        bar.update(1)
        if loss == loss:  # not NaN
            bar.set_postfix(loss=f"{loss:.6g}", refresh=False)

    announce_compiles(wants_notice())
    try:
        return run_job(job, settings, options, progress, workers=workers)
    except IlrmaError as err:
        _report_failure(err.format_message())
        return JobRecord(job.mixture.track, [str(p) for p in job.mixture.paths], status="error",
                         error=err.format_message())  # fmt: skip
    finally:
        bar.close()


def _run_elsewhere(jobs: list[Job], settings: SeparationSettings, options: OutputOptions,
                   n_workers: int, scheduler: str | None, keep_going: bool,
                   show_progress: bool) -> list[JobRecord]:  # fmt: skip
    """Jobs in worker processes (local pool or Dask): one progress bar over mixtures."""
    records: dict[int, JobRecord] = {}
    run = partial(run_job_safely, settings=settings, options=options)
    with tqdm(total=len(jobs), desc="mixtures", unit="mix", file=sys.stderr,
              disable=None if show_progress else True, leave=False) as bar:  # fmt: skip
        for index, record in imap_runs(run, jobs, n_workers, scheduler):
            records[index] = record
            bar.update(1)
            for message in record.warnings:
                log.warning("%s: %s", record.inputs[0], message)
            if record.status != "ok":
                _report_failure(record.error or "failed")
                if not keep_going:
                    break
    return [records[i] for i in sorted(records)]


def _report_failure(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def _document(records: list[JobRecord], settings: SeparationSettings,
              options: OutputOptions) -> dict[str, object]:  # fmt: skip
    return {
        "settings": {
            **settings.to_dict(),
            "subtype": options.subtype,
            "clip_mode": options.clip_mode,
        },
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
                "seconds": r.seconds,
            }
            for r in records
        ],
        "versions": versions(),
    }
