"""``ilrma sweep``: separate one mixture over a grid of settings and seeds, score every run."""

from __future__ import annotations

import json
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np
from click.core import ParameterSource
from tqdm import tqdm

from ilrma_cli import figures
from ilrma_cli.atomic import write_atomically
from ilrma_cli.audio import plan_mixtures, read_mixture
from ilrma_cli.batch.plan import check_out_dir
from ilrma_cli.commands.options import (
    GridCommand,
    VariadicOption,
    check_executor,
    check_stft_options,
    execution_options,
    pad_option,
    report_options,
    settings_options,
    sweep_grid,
)
from ilrma_cli.cores import threads_per_process
from ilrma_cli.engine.threads import set_threads
from ilrma_cli.errors import InputError, OutputError, ProcessingError
from ilrma_cli.execute import imap_processes, imap_runs, interruptible
from ilrma_cli.logs import setup_logging
from ilrma_cli.pipeline import check_signal
from ilrma_cli.settings import SeparationSettings
from ilrma_cli.signals import load_signals
from ilrma_cli.study import grid as study_grid
from ilrma_cli.study import summary as study_summary
from ilrma_cli.study.grid import OK, SETTING_COLUMNS, Run, parse_int_grid, plan_runs, typed
from ilrma_cli.study.log import RunLog, columns
from ilrma_cli.study.run import StudyData, execute_run

FIGURES = ("sdr_boxplot.png", "loss_curves.png")

logger = logging.getLogger("ilrma")


def _seeds(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return parse_int_grid(value, 0)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param) from None


@click.command("sweep", cls=GridCommand)
@click.argument(
    "inputs", nargs=-1, required=True, metavar="INPUT...", type=click.Path(path_type=Path)
)
@click.option(
    "--refs",
    "references",
    cls=VariadicOption,
    required=True,
    metavar="REF...",
    type=click.Path(path_type=Path),
    help="Reference signals, one per source (mono, or images scored at --ref-mic).",
)
@click.option(
    "--early-refs",
    "early_references",
    cls=VariadicOption,
    metavar="REF...",
    type=click.Path(path_type=Path),
    help="Early images of the sources (direct path + early reflections), one per source, "
    "like --refs: adds the sdr_early_*, ..., sdri_early columns and early statistics.",
)
@click.option(
    "-o",
    "--out-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for runs.csv, losses.jsonl, summary.csv and the figures; "
    "rerunning with the same folder resumes.",
)
@settings_options("sweep")
@click.option(
    "--restarts",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Random restarts per setting: seeds 0 to N-1.",
)
@click.option(
    "--seeds",
    callback=_seeds,
    default=None,
    metavar="LIST",
    help="Explicit seeds instead of --restarts, e.g. 0-9 or 3,7.",
)
@pad_option
@click.option(
    "--save-audio",
    is_flag=True,
    help="Also write the sources of each run to DIR/audio/<key>/ (key as in runs.csv).",
)
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures (no matplotlib needed).")
@execution_options("runs in parallel")
@report_options
def sweep(inputs: tuple[Path, ...], references: tuple[Path, ...],
          early_references: tuple[Path, ...], out_dir: Path,
          restarts: int, seeds: list[int] | None, pad: bool, save_audio: bool,
          no_figures: bool, jobs: int, scheduler: str | None, threads: int | None, quiet: bool,
          verbose: bool, no_progress: bool, as_json: bool, **values: Any) -> None:  # fmt: skip
    """Separate the mixture INPUT over a grid of settings and seeds and score every run.

    INPUT is one multichannel file, or the mono microphone files of one mixture.
    Every list option is a grid axis; the runs are their cartesian product times
    the seeds. A flag (--no-normalize) holds for every run, or is an
    axis when given a list: --no-normalize=no,yes. The automatic STFT (auto) is the
    one separate picks for the input's sample rate. Each run is scored against the --refs (SDR, SIR, SAR per source;
    SDRi over the mixture at --ref-mic) and logged to DIR/runs.csv as it finishes.
    Separated audio is not written unless --save-audio. With --early-refs (the early
    images) every run is also scored against them: sdri_early and its statistics.

    \b
      ilrma sweep mix.wav --refs s1.wav s2.wav -o study/ --n-basis 2-9 --restarts 10 -j 2
      ilrma sweep mix.wav --refs s1.wav s2.wav -o study/ --n-fft 1024,2048,4096 --update ip,iss

    Writes DIR/runs.csv (one row per run), losses.jsonl (loss per iteration of each
    run), summary.csv (mean, median, min, max SDRi per setting, also printed),
    sdr_boxplot.png and loss_curves.png. A run that fails (a numerical failure) is
    logged with status "failed" and its error; the others go on, and the exit code is 1.
    Rerunning with the same DIR skips the successful runs already in runs.csv and
    retries the failed ones; summary and figures cover the runs of the grid asked for.
    """
    setup_logging(quiet, verbose)
    restarts_given = click.get_current_context().get_parameter_source("restarts")
    if seeds is not None and restarts_given is not ParameterSource.DEFAULT:
        raise click.UsageError("give --restarts or --seeds, not both")
    seeds = seeds if seeds is not None else list(range(restarts))
    check_executor(jobs, scheduler)
    grid = sweep_grid(values)
    check_stft_options(grid["n_fft"], grid["hop"])
    ref_mic = grid["ref_mic"][0]
    if not no_figures:
        figures.require_matplotlib("ilrma sweep (or use --no-figures)")
    check_out_dir(out_dir)

    data = _load(inputs, (references, early_references), ref_mic, pad,
                 out_dir / "audio" if save_audio else None)  # fmt: skip
    try:
        runs = plan_runs(grid, seeds, data.data_id, data.rate, data.mixture.shape[1])
    except ValueError as err:  # a grid point whose settings cannot go together
        raise click.UsageError(str(err)) from None
    for settings in {run.settings.stft: run.settings for run in runs}.values():
        _check(data, settings)
    log = RunLog(out_dir, columns(len(data.references), data.early is not None), data.data_id)
    logged = _load_log(log)
    todo = [run for run in runs if logged.get(run.key, {}).get("status") != OK]
    retried = sum(run.key in logged for run in todo)
    n_settings = len(runs) // len(seeds)
    if not quiet:
        click.echo(f"sweep: {len(runs)} runs ({n_settings} settings x {len(seeds)} seeds); "
                   f"{len(runs) - len(todo)} already in {log.runs_path}, {len(todo)} to run"
                   + (f" ({retried} failed before: retried)" if retried else ""),
                   err=True)  # fmt: skip

    set_threads(threads_per_process(threads, min(jobs, len(todo)), scheduler))
    _execute(todo, data, log, jobs, scheduler, not (no_progress or quiet))
    log.sort([run.key for run in runs])
    logged = log.load()
    rows = [logged[run.key] for run in runs]
    failed = [row for row in rows if row["status"] != OK]
    summaries = study_summary.summarize(rows)
    write_atomically(out_dir / "summary.csv", study_summary.summary_csv(summaries))
    written = [p for p in (log.runs_path, log.losses_path, out_dir / "summary.csv") if p.exists()]
    if not no_figures:
        written += _draw(rows, log.losses(), data.input_name, out_dir)

    names = study_summary.varying(rows)
    if as_json:
        document = {
            "input": data.input_name,
            "runs": len(runs),
            "ran": len(todo),
            "failed": [
                {"key": row["key"], **typed(_setting_and_seed(row)), "error": row["error"]}
                for row in failed
            ],
            "fixed": typed({name: rows[0][name] for name in SETTING_COLUMNS if name not in names}),
            "varying": names,
            "seeds": seeds,
            "summary": [
                {
                    **typed(s.setting),
                    "n_runs": s.n_runs,
                    "n_failed": s.n_failed,
                    "sdri": {k: v if s.n_runs else None for k, v in s.sdri.items()},
                    **(
                        {
                            "sdri_early": {
                                k: v if s.n_runs else None for k, v in s.sdri_early.items()
                            }
                        }
                        if s.sdri_early is not None
                        else {}
                    ),
                }
                for s in summaries
            ],
            "files": [str(path) for path in written],
        }
        click.echo(json.dumps(document, indent=2))
        click.get_current_context().meta["json_printed"] = True
    else:
        click.echo(f"{data.input_name}: SDRi (dB) over {len(seeds)} seeds; "
                   f"{study_summary.fixed_settings(rows)}")  # fmt: skip
        click.echo(study_summary.summary_table(summaries, names))
    if failed:
        raise ProcessingError(
            f"{len(failed)} of {len(runs)} runs failed (first: run {_run_name(failed[0])}: "
            f"{failed[0]['error']}); their "
            f"rows in {log.runs_path} have status failed and the error; rerun to retry them"
        )


def _setting_and_seed(row: dict[str, str]) -> dict[str, str]:
    return {name: row[name] for name in (*SETTING_COLUMNS, "seed")}


def _run_name(row: dict[str, str]) -> str:
    """A run for messages: ``<key> (n_fft=..., ..., seed=...)``."""
    settings = ", ".join(f"{name}={value}" for name, value in _setting_and_seed(row).items())
    return f"{row['key']} ({settings})"


def _load(inputs: tuple[Path, ...], references: tuple[tuple[Path, ...], tuple[Path, ...]],
          ref_mic: int, pad: bool, audio_dir: Path | None) -> StudyData:  # fmt: skip
    """Read the one mixture, its references and any early images (``references``: the
    ``--refs`` and the ``--early-refs`` files); refuse what cannot make a study."""
    mixtures = plan_mixtures(inputs)
    if len(mixtures) > 1:
        raise click.UsageError(
            f"sweep takes one mixture, got {len(mixtures)} multichannel files: "
            "run one sweep per mixture, each with its own --out-dir"
        )
    audio = read_mixture(mixtures[0], pad=pad)
    if ref_mic >= audio.n_channels:
        raise click.BadParameter(f"{ref_mic} does not exist: the input has {audio.n_channels} "
                                 "channels", param_hint="--ref-mic")  # fmt: skip
    signals = [
        _references(paths, option, audio.n_channels, audio.n_samples, audio.rate, ref_mic)
        for paths, option in zip(references, ("--refs", "--early-refs"), strict=True)
        if paths
    ]
    paths = [*mixtures[0].paths, *references[0], *references[1]]
    return StudyData(audio.data, signals[0], audio.rate, " ".join(map(str, mixtures[0].paths)),
                     study_grid.fingerprint(paths), audio_dir,
                     signals[1] if len(signals) > 1 else None)  # fmt: skip


def _references(paths: tuple[Path, ...], option: str, n_channels: int, n_samples: int,
                rate: int, ref_mic: int) -> np.ndarray:  # fmt: skip
    """The ``option`` files at ``ref_mic``, ``(n_sources, n_samples)``: one per channel, at the
    mixture's rate and length."""
    if len(paths) != n_channels:
        raise click.UsageError(
            f"{len(paths)} {option} for a mixture of {n_channels} channels: "
            "ILRMA finds one source per channel, give one reference per source"
        )
    refs, refs_rate = load_signals(paths, ref_mic)
    if refs_rate != rate:
        raise InputError(paths[0], f"sample rate {refs_rate} Hz differs from the mixture's "
                                   f"({rate} Hz)")  # fmt: skip
    if refs.shape[1] != n_samples:
        raise InputError(paths[0], f"has {refs.shape[1]} samples, the mixture "
                                   f"{n_samples}: references must match it")  # fmt: skip
    return refs


def _check(data: StudyData, settings: SeparationSettings) -> None:
    try:
        check_signal(data.mixture, settings)
    except ValueError as err:
        raise InputError(data.input_name, str(err)) from None


def _load_log(log: RunLog) -> dict[str, dict[str, str]]:
    try:
        return log.load()
    except ValueError as err:
        raise OutputError(log.runs_path, str(err)) from None


def _execute(todo: list[Run], data: StudyData, log: RunLog, jobs: int,
             scheduler: str | None, show_progress: bool) -> None:  # fmt: skip
    """Run and log every run; on Ctrl-C or SIGTERM the finished runs stay logged.

    Always in worker processes, even for ``-j 1``: every run then uses one BLAS thread, so
    the scores do not depend on ``-j`` (multithreaded BLAS sums in another order).
    """
    if not todo:
        return
    run = partial(execute_run, data=data)
    results = (
        imap_runs(run, todo, scheduler=scheduler) if scheduler else imap_processes(run, todo, jobs)
    )
    resume = f"{log.runs_path}; rerun the same command to resume"
    with (
        tqdm(total=len(todo), desc="runs", unit="run", file=sys.stderr,
             disable=None if show_progress else True, dynamic_ncols=True) as bar,
        interruptible(f"the finished runs are in {resume}"),
    ):  # fmt: skip
        for _, (row, loss) in results:
            log.append(row, loss)
            bar.update(1)
            if row["status"] == OK:
                bar.set_postfix(sdri=f"{float(row['sdri']):.2f}", refresh=False)
                logger.info("run %s: SDRi %.2f dB", _run_name(row), float(row["sdri"]))
            else:
                logger.warning("run %s failed: %s", _run_name(row), row["error"])


def _draw(rows: list[dict[str, str]], losses: dict[str, list[float]], input_name: str,
          out_dir: Path) -> list[Path]:  # fmt: skip
    """Both figures, from the logged rows and losses alone."""
    names = study_summary.varying(rows)
    axis = " / ".join(names) if names else "setting"
    fixed = study_summary.fixed_settings(rows)
    n_seeds = len({row["seed"] for row in rows})
    n_failed = len(rows) - len(study_summary.succeeded(rows))
    failures = f" ({n_failed} failed runs not shown)" if n_failed else ""
    boxplot = figures.sdr_boxplot_png(
        study_summary.box_data(rows), axis,
        f"ILRMA on {input_name}: SDRi per {axis}, {n_seeds} seeds each{failures}\n{fixed}",
    )  # fmt: skip
    curves = figures.loss_curves_png(
        study_summary.loss_data(rows, losses), axis,
        f"ILRMA on {input_name}: loss per run, colour by {axis}\n{fixed}",
    )  # fmt: skip
    paths = [out_dir / name for name in FIGURES]
    for path, png in zip(paths, (boxplot, curves), strict=True):
        write_atomically(path, png)
    return paths
