"""``ilrma evaluate``: score separated sources against references (BSS Eval v3, SI-SDR)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import soundfile as sf

from ilrma_cli.atomic import write_atomically
from ilrma_cli.commands.options import VariadicCommand, VariadicOption
from ilrma_cli.errors import InputError
from ilrma_cli.logs import setup_logging
from ilrma_cli.metrics import BACKENDS, Scores, score
from ilrma_cli.signals import load_signals

AUDIO_SUFFIXES = {f".{name.lower()}" for name in sf.available_formats()} | {".aif"}


def audio_files(folder: Path) -> list[Path]:
    """Audio files (by suffix) in ``folder``, sorted by name; hidden files are skipped."""
    if not folder.exists():
        raise InputError(folder, "no such directory")
    if not folder.is_dir():
        raise InputError(folder, "is not a directory")
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and path.suffix.lower() in AUDIO_SUFFIXES
        and not path.name.startswith(".")
    )


@click.command("evaluate", cls=VariadicCommand)
@click.argument("estimates", nargs=-1, metavar="[ESTIMATE]...", type=click.Path(path_type=Path))
@click.option(
    "--refs",
    "references",
    cls=VariadicOption,
    required=True,
    metavar="REF...",
    type=click.Path(path_type=Path),
    help="Reference files, one per source. The list ends at the next option or at '--'.",
)
@click.option(
    "--early-refs",
    "early_references",
    cls=VariadicOption,
    metavar="REF...",
    type=click.Path(path_type=Path),
    help="Early images of the sources (direct path + early reflections), one per source: "
    "also score against them (a second table; metrics_early in --json; rows in --csv).",
)
@click.option(
    "--est-dir",
    type=click.Path(path_type=Path),
    help="Score every audio file in DIR, sorted by name, instead of ESTIMATE files.",
)
@click.option(
    "--mix",
    "mixture",
    type=click.Path(path_type=Path),
    help="Also score the unprocessed mixture as the estimate of every source; adds SDRi, SIRi.",
)
@click.option(
    "--ref-mic",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Channel taken from multichannel files (source images, mixture).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="fast",
    show_default=True,
    help="fast: our BSS Eval, same numbers much sooner; mir_eval: bss_eval_sources itself.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of the table."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the scores to this CSV file.",
)
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def evaluate(
    estimates: tuple[Path, ...],
    references: tuple[Path, ...],
    early_references: tuple[Path, ...],
    est_dir: Path | None,
    mixture: Path | None,
    ref_mic: int,
    backend: str,
    as_json: bool,
    csv_path: Path | None,
    quiet: bool,
) -> None:
    """Score ESTIMATE files against the --refs files: SDR, SIR, SAR (BSS Eval v3, as
    mir_eval's bss_eval_sources), SI-SDR, and which estimate matched which reference.

    \b
      ilrma evaluate est1.wav est2.wav --refs piano.wav violin.wav
      ilrma evaluate --refs piano.wav violin.wav --est-dir out/mix --mix mix.wav
      ilrma evaluate --refs piano.wav violin.wav --json -- est1.wav est2.wav

    Estimates may come in any order: the permutation with the highest mean SIR is used.
    With --early-refs (the early images: what a dereverberated estimate aims at) the
    estimates are scored against those too, each reference set on its own.
    """
    setup_logging(quiet, False)
    if estimates and est_dir is not None:
        raise click.UsageError("give ESTIMATE files or --est-dir, not both")
    estimate_paths = list(estimates) if est_dir is None else audio_files(est_dir)
    if not estimate_paths and est_dir is None:
        raise click.UsageError(
            "no ESTIMATE files: put them before --refs, end the --refs list with '--', "
            "or use --est-dir"
        )
    _check_counts(estimate_paths, list(references), est_dir)
    if early_references:
        _check_counts(estimate_paths, list(early_references), est_dir)
    scored = [
        (refs, *_scores(refs, estimate_paths, mixture, ref_mic, backend))
        for refs in (references, early_references)
        if refs
    ]
    est_names = [str(path) for path in estimate_paths]
    if csv_path is not None:
        write_atomically(csv_path, _csv_text(scored, est_names))
    if as_json:
        refs, scores, rate, n_samples = scored[0]
        document = _json_document(scores, _names(refs), est_names, mixture, rate, n_samples)
        if early_references:
            refs, scores, _, n_samples = scored[1]
            early = _json_document(scores, _names(refs), est_names, mixture, rate, n_samples)
            document["metrics_early"] = {
                k: v for k, v in early.items() if k not in ("estimates", "mixture", "rate")
            }
        click.echo(json.dumps(document, indent=2))
    else:
        tables = [
            scores.format_table(short_names(refs), short_names(estimate_paths))
            for refs, scores, _, _ in scored
        ]
        if len(tables) > 1:
            tables[1] = f"\nagainst the early images (--early-refs):\n{tables[1]}"
        click.echo("\n".join(tables))


def _scores(
    references: tuple[Path, ...],
    estimates: list[Path],
    mixture: Path | None,
    ref_mic: int,
    backend: str,
) -> tuple[Scores, int, int]:
    """The scores of ``estimates`` against ``references``, the rate and the samples scored.

    Each reference set is read with the estimates and the mixture on its own, so the
    lengths of one set never trim the other's.
    """
    paths = [*references, *estimates] + ([mixture] if mixture is not None else [])
    signals, rate = load_signals(paths, ref_mic)
    n_sources = len(references)
    try:
        scores = score(
            signals[:n_sources],
            signals[n_sources : 2 * n_sources],
            signals[-1] if mixture is not None else None,
            backend=backend,
        )
    except ValueError as err:
        raise InputError(references[0], f"cannot be scored: {err}") from None
    return scores, rate, signals.shape[1]


def _names(paths: tuple[Path, ...]) -> list[str]:
    return [str(path) for path in paths]


def short_names(paths: list[Path] | tuple[Path, ...]) -> list[str]:
    """File names for a table, or the paths as given when two files share a name."""
    names = [path.name for path in paths]
    return names if len(set(names)) == len(names) else [str(path) for path in paths]


def _check_counts(estimates: list[Path], references: list[Path], est_dir: Path | None) -> None:
    n_est, n_ref = len(estimates), len(references)
    if n_est == n_ref:
        return
    counts = f"{_count(n_est, 'estimate')} for {_count(n_ref, 'reference')}"
    if est_dir is not None:
        raise InputError(est_dir, f"{counts}: give one audio file per reference")
    if n_est > n_ref:
        raise InputError(estimates[n_ref], f"{counts}: this estimate has no reference")
    raise InputError(references[n_est], f"{counts}: this reference has no estimate")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _json_document(
    scores: Scores,
    ref_names: list[str],
    est_names: list[str],
    mixture: Path | None,
    rate: int,
    n_samples: int,
) -> dict:
    document = {
        "references": ref_names,
        "estimates": est_names,
        "mixture": None if mixture is None else str(mixture),
        "rate": rate,
        "n_samples": n_samples,
        **scores.to_dict(),
    }
    for entry in document["sources"]:
        entry["reference_file"] = ref_names[entry["reference"]]
        entry["estimate_file"] = est_names[entry["estimate"]]
    return document


def _csv_text(scored: list[tuple[tuple[Path, ...], Scores, int, int]], est_names: list[str]) -> str:
    """Per reference set (the --refs, then any --early-refs): one row per reference then a
    ``mean`` row (``mean early`` for the early images); values in dB, full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["reference", "estimate", *scored[0][1].metrics])
    for index, (references, scores, _, _) in enumerate(scored):
        ref_names = _names(references)
        for ref, est in enumerate(scores.permutation):
            values = [float(getattr(scores, name)[ref]) for name in scores.metrics]
            writer.writerow([ref_names[ref], est_names[est], *values])
        writer.writerow(["mean early" if index else "mean", "", *scores.means().values()])
    return buffer.getvalue()
