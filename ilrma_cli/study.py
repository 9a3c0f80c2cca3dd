"""Parameter studies behind ``ilrma sweep``: the grid, run identity, one run, the run log.

No click and no printing: grids are parsed from strings, runs are planned as
plain data, and the log is two files in the output folder that are only ever
appended to while runs finish:

``runs.csv``
    one row per finished run: its key, input, every setting, seed, scores, loss, time,
    and its ``status``: ``ok``, or ``failed`` with the ``error`` (scores left empty);
``losses.jsonl``
    one line per successful run: ``{"key": ..., "loss": [...]}`` (written before its row).

A run's key hashes the input and reference contents, every setting and the seed, so a
rerun skips exactly the runs already logged with status ``ok`` and retries the failed
ones (their new row replaces the old). Errors are :class:`ValueError` with a message the
command line shows as is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilrma_cli.engine import ILRMAConfig
from ilrma_cli.evaluate import score
from ilrma_cli.io import AtomicWriter, new_file_mode
from ilrma_cli.pipeline import SeparationSettings, separate
from ilrma_cli.stft import StftConfig

GRID_PARAMETERS = ("n_fft", "hop", "window", "n_basis", "n_iter", "iva_iter", "update")
SETTING_COLUMNS = (*GRID_PARAMETERS, "normalize", "ref_mic")
RUNS_FILE = "runs.csv"
LOSSES_FILE = "losses.jsonl"
STATISTICS = ("mean", "median", "min", "max")
OK, FAILED = "ok", "failed"
# What a run may raise on valid input: a numerical failure (singular matrix, NaN or silent
# estimate refused by the scoring) or a lack of memory. Anything else stops the sweep.
RUN_FAILURES = (ValueError, ArithmeticError, MemoryError)


def parse_int_grid(text: str, minimum: int = 0) -> list[int]:
    """Integers from ``"4"``, ``"2,4,8"``, ``"2-9"``, ``"2-9:2"`` or a mix (``"1,4-6"``).

    Values keep their order of first appearance; repeats are dropped.
    """
    values: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            raise ValueError(f"empty item in {text!r}")
        span, _, step_text = part.partition(":")
        first_text, dash, last_text = span.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if dash else first
            step = int(step_text) if step_text else 1
        except ValueError:
            raise ValueError(
                f"{part!r} is not an integer, a range A-B or a stepped range A-B:STEP"
            ) from None
        if step_text and not dash:
            raise ValueError(f"{part!r}: a step needs a range, as in 2-9:2")
        if step < 1:
            raise ValueError(f"{part!r}: the step must be at least 1")
        if last < first:
            raise ValueError(f"{part!r}: the range ends before it starts")
        if first < minimum:
            raise ValueError(f"{first} is below the minimum {minimum}")
        values += [v for v in range(first, last + 1, step) if v not in values]
    return values


def parse_name_grid(text: str, choices: Sequence[str]) -> list[str]:
    """Names from ``"ip"`` or ``"ip,iss"``, each one of ``choices``; repeats dropped."""
    values: list[str] = []
    for part in text.replace(" ", "").split(","):
        if part not in choices:
            raise ValueError(f"{part!r} is not one of {', '.join(choices)}")
        if part not in values:
            values.append(part)
    return values


@dataclass(frozen=True)
class Run:
    """One separation of the study: its settings (seed included) and its key."""

    settings: SeparationSettings
    key: str

    @property
    def setting(self) -> dict[str, str]:
        """The setting columns as they appear in the CSV (seed excluded)."""
        return setting_of(self.settings)


def setting_of(settings: SeparationSettings) -> dict[str, str]:
    values = settings.to_dict()
    return {name: str(values[name]) for name in SETTING_COLUMNS}


def fingerprint(paths: Sequence[Path]) -> str:
    """A short hash of the files' contents, in order: the identity of a study's data."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()[:16]


def run_key(data_id: str, settings: SeparationSettings) -> str:
    """Stable identity of a run: data, every setting and the seed."""
    identity = {"data": data_id, **setting_of(settings), "seed": settings.seed}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def plan_runs(
    grid: dict[str, Sequence[object]],
    seeds: Sequence[int],
    data_id: str,
    normalize: bool = True,
    ref_mic: int = 0,
) -> list[Run]:
    """The cartesian product of ``grid`` (every :data:`GRID_PARAMETERS` name) and ``seeds``.

    Settings vary in :data:`GRID_PARAMETERS` order, the seed fastest. Raises ``ValueError``
    for an invalid combination (such as a hop longer than the frame).
    """
    runs = []
    for values in itertools.product(*(grid[name] for name in GRID_PARAMETERS), seeds):
        p = dict(zip((*GRID_PARAMETERS, "seed"), values, strict=True))
        settings = SeparationSettings(
            stft=StftConfig(p["n_fft"], p["hop"], p["window"]),
            ilrma=ILRMAConfig(
                n_basis=p["n_basis"],
                n_iter=p["n_iter"],
                update=p["update"],
                normalize=normalize,
                iva_iter=p["iva_iter"],
            ),
            ref_mic=ref_mic,
            seed=p["seed"],
        )
        runs.append(Run(settings, run_key(data_id, settings)))
    return runs


@dataclass(frozen=True)
class StudyData:
    """What every run needs: the mixture ``(n_channels, n_samples)``, references at the
    reference microphone ``(n_sources, n_samples)``, names, and where to save audio (if at all)."""

    mixture: np.ndarray
    references: np.ndarray
    rate: int
    input_name: str
    data_id: str
    audio_dir: Path | None = None


def columns(n_sources: int) -> list[str]:
    """Header of ``runs.csv`` for a study of ``n_sources`` sources."""
    return ["key", "input", "data_id", *SETTING_COLUMNS, "seed", *result_columns(n_sources),
            "seconds", "status", "error"]  # fmt: skip


def result_columns(n_sources: int) -> list[str]:
    """The columns of ``runs.csv`` that only a successful run fills."""
    scores = [f"{m}_{j}" for j in range(1, n_sources + 1) for m in ("sdr", "sir", "sar")]
    return [*scores, "sdri", "final_loss", "iterations"]


def execute_run(run: Run, data: StudyData) -> tuple[dict[str, str], list[float]]:
    """Separate, score against the references (the mixture at the reference mic as
    baseline for SDRi), optionally save the sources; returns the CSV row and the losses.

    A run that fails (:data:`RUN_FAILURES`) returns a row with status ``failed``, the
    error, empty scores, and no losses; the sweep goes on with the other runs.
    """
    start = time.perf_counter()
    row = {"key": run.key, "input": data.input_name, "data_id": data.data_id, **run.setting,
           "seed": str(run.settings.seed)}  # fmt: skip
    try:
        separation = separate(data.mixture, run.settings)
        scores = score(
            data.references, separation.sources, mixture=data.mixture[run.settings.ref_mic]
        )
    except RUN_FAILURES as err:
        scoreless = dict.fromkeys(result_columns(len(data.references)), "")
        message = " ".join(str(err).split()) or type(err).__name__
        row.update(scoreless, seconds=f"{time.perf_counter() - start:.3f}", status=FAILED,
                   error=message)  # fmt: skip
        return row, []
    if data.audio_dir is not None:
        with AtomicWriter() as writer:
            for index, source in enumerate(separation.sources, start=1):
                writer.write(data.audio_dir / run.key / f"source{index}.wav", source, data.rate)
            writer.commit()
    loss = [float(v) for v in separation.result.loss]
    for j in range(len(data.references)):
        for metric in ("sdr", "sir", "sar"):
            row[f"{metric}_{j + 1}"] = str(float(getattr(scores, metric)[j]))
    row["sdri"] = str(float(np.mean(scores.sdri)))
    row["final_loss"] = str(loss[-1]) if loss else "nan"
    row["iterations"] = str(separation.result.n_iter)
    row["seconds"] = f"{time.perf_counter() - start:.3f}"
    row.update(status=OK, error="")
    return row, loss


def succeeded(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of runs that finished with scores (status ``ok``)."""
    return [row for row in rows if row["status"] == OK]


class RunLog:
    """``runs.csv`` and ``losses.jsonl`` in ``folder``: append as runs finish, read to resume."""

    def __init__(self, folder: Path, header: list[str], data_id: str) -> None:
        self.folder = Path(folder)
        self.header = header
        self.data_id = data_id
        self.runs_path = self.folder / RUNS_FILE
        self.losses_path = self.folder / LOSSES_FILE

    def load(self) -> dict[str, dict[str, str]]:
        """Logged rows by key. A line cut short by a crash is dropped from the file.

        Raises ``ValueError`` when the log holds other columns or was made from other data.
        """
        text = _read_whole_lines(self.runs_path)
        if not text:
            return {}
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames != self.header:
            raise ValueError(
                "was written with other columns (another version of ilrma or another number "
                "of sources): use another --out-dir"
            )
        rows = {row["key"]: row for row in reader}
        other = {row["data_id"] for row in rows.values()} - {self.data_id}
        if other:
            raise ValueError(
                "holds runs made from other input or reference files (their contents differ): "
                "use another --out-dir for this data"
            )
        return rows

    def losses(self) -> dict[str, list[float]]:
        """Loss per iteration by key (the last line wins)."""
        result = {}
        for line in _read_whole_lines(self.losses_path).splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # damaged by an earlier crash: that run's curve is missing
            result[entry["key"]] = entry["loss"]
        return result

    def append(self, row: dict[str, str], loss: list[float]) -> None:
        """Log one finished run durably: its losses first (if it succeeded), then its row.

        A row whose key is logged already (a failed run retried) supersedes the old one.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        if row["status"] == OK:
            _read_whole_lines(self.losses_path)  # cut a line torn by a crash before appending
            line = json.dumps({"key": row["key"], "loss": loss}) + "\n"
            _append_durably(self.losses_path, line)
        new = not self.runs_path.exists() or self.runs_path.stat().st_size == 0
        lines = ([self.header] if new else []) + [[row[name] for name in self.header]]
        _append_durably(self.runs_path, _csv_lines(lines))

    def sort(self, keys: Sequence[str]) -> None:
        """Rewrite ``runs.csv`` with ``keys`` first in that order (the others after, as they were)."""
        rows = self.load()
        rank = {key: i for i, key in enumerate(keys)}
        ordered = sorted(rows.values(), key=lambda row: rank.get(row["key"], len(rank)))
        lines = [self.header] + [[row[name] for name in self.header] for row in ordered]
        write_text_durably(self.runs_path, _csv_lines(lines))


def _read_whole_lines(path: Path) -> str:
    """The file's text up to its last newline, cutting off (in the file too) a torn last line."""
    if not path.exists():
        return ""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return data[:end].decode("utf-8")


def _append_durably(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _csv_lines(lines: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def write_text_durably(path: Path, text: str | bytes) -> None:
    """Replace ``path`` at once: write a temporary beside it, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.chmod(tmp, new_file_mode())  # mkstemp makes it private; give it a normal file's mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def varying(rows: Sequence[dict[str, str]]) -> list[str]:
    """Setting columns that take more than one value among ``rows``."""
    return [name for name in SETTING_COLUMNS if len({row[name] for row in rows}) > 1]


def label(row: dict[str, str], names: Sequence[str]) -> str:
    """A setting's name for tables and figures: ``"4"``, ``"n_basis=4, update=iss"``, ``"all runs"``."""
    if not names:
        return "all runs"
    if len(names) == 1:
        return row[names[0]]
    return ", ".join(f"{name}={row[name]}" for name in names)


def group_by_setting(rows: Sequence[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Rows of the same setting together, in order of first appearance."""
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[name] for name in SETTING_COLUMNS), []).append(row)
    return list(groups.values())


def box_data(rows: Sequence[dict[str, str]]) -> list[tuple[str, list[float]]]:
    """One box per setting: its label and the mean SDRi of every successful run in it."""
    names = varying(rows)
    return [
        (label(group[0], names), [float(row["sdri"]) for row in succeeded(group)])
        for group in group_by_setting(rows)
    ]


def loss_data(
    rows: Sequence[dict[str, str]], losses: dict[str, list[float]]
) -> list[tuple[str, list[list[float]]]]:
    """Per setting: its label and the loss curve of every successful run in it (runs
    without one skipped)."""
    names = varying(rows)
    return [
        (
            label(group[0], names),
            [losses[row["key"]] for row in succeeded(group) if row["key"] in losses],
        )
        for group in group_by_setting(rows)
    ]


@dataclass(frozen=True)
class SettingSummary:
    """Mean SDRi statistics over the successful runs (seeds) of one setting; NaN if none."""

    setting: dict[str, str]
    n_runs: int  # successful runs, those the statistics are over
    n_failed: int
    sdri: dict[str, float]  # keys: STATISTICS


def summarize(rows: Sequence[dict[str, str]]) -> list[SettingSummary]:
    """Mean, median, min and max of the mean SDRi per setting, in order of first appearance."""
    summaries = []
    for group in group_by_setting(rows):
        values = [float(row["sdri"]) for row in succeeded(group)]
        stats = dict.fromkeys(STATISTICS, float("nan"))
        if values:
            stats = {
                "mean": statistics.fmean(values),
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
        setting = {name: group[0][name] for name in SETTING_COLUMNS}
        summaries.append(SettingSummary(setting, len(values), len(group) - len(values), stats))
    return summaries


def summary_csv(summaries: Sequence[SettingSummary]) -> str:
    """``summary.csv``: every setting column, the successful and failed run counts and the
    SDRi statistics in dB (``nan`` for a setting whose runs all failed)."""
    header = [*SETTING_COLUMNS, "n_runs", "n_failed", *(f"sdri_{s}" for s in STATISTICS)]
    lines = [header] + [
        [*s.setting.values(), str(s.n_runs), str(s.n_failed), *(str(s.sdri[k]) for k in STATISTICS)]
        for s in summaries
    ]
    return _csv_lines(lines)


def summary_table(summaries: Sequence[SettingSummary], names: Sequence[str]) -> str:
    """Aligned text: the ``names`` columns (or one ``setting`` column), runs, SDRi stats (dB).

    A ``failed`` column follows ``runs`` when any run failed; statistics of a setting
    without a successful run show as ``-``.
    """
    failures = any(s.n_failed for s in summaries)
    header = [*(names or ["setting"]), "runs", *(["failed"] if failures else []),
              *(f"SDRi {s}" for s in STATISTICS)]  # fmt: skip
    rows = [
        [
            *([s.setting[n] for n in names] or ["all runs"]),
            str(s.n_runs),
            *([str(s.n_failed)] if failures else []),
            *(f"{s.sdri[k]:.2f}" if s.n_runs else "-" for k in STATISTICS),
        ]  # fmt: skip
        for s in summaries
    ]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    )


def typed(setting: dict[str, str]) -> dict[str, object]:
    """Setting columns read back as numbers and booleans (for JSON)."""
    names = {"normalize": {"True": True, "False": False}}
    return {
        name: names[name][value] if name in names else int(value) if value.isdigit() else value
        for name, value in setting.items()
    }


def fixed_settings(rows: Sequence[dict[str, str]]) -> str:
    """The settings common to every row, for titles: ``"n_fft=4096, hop=2048, ..."``."""
    names = [name for name in SETTING_COLUMNS if name not in varying(rows)]
    return ", ".join(f"{name}={rows[0][name]}" for name in names) if rows else ""
