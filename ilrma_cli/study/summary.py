"""A study's summary: runs grouped by setting, SDRi statistics, tables and figure data."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ilrma_cli.study.grid import OK, SETTING_COLUMNS
from ilrma_cli.study.log import csv_lines

STATISTICS = ("mean", "median", "min", "max")


def succeeded(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of runs that finished with scores (status ``ok``)."""
    return [row for row in rows if row["status"] == OK]


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
    return csv_lines(lines)


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


def fixed_settings(rows: Sequence[dict[str, str]]) -> str:
    """The settings common to every row, for titles: ``"n_fft=4096, hop=2048, ..."``."""
    names = [name for name in SETTING_COLUMNS if name not in varying(rows)]
    return ", ".join(f"{name}={rows[0][name]}" for name in names) if rows else ""
