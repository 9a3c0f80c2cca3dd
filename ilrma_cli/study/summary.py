"""A study's summary: runs grouped by setting, SDRi statistics (also against the early
images when the study has them), tables and figure data."""

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
    """Mean SDRi statistics over the successful runs (seeds) of one setting; NaN if none.

    ``sdri_early``: the same against the early images, None when the study has none.
    """

    setting: dict[str, str]
    n_runs: int  # successful runs, those the statistics are over
    n_failed: int
    sdri: dict[str, float]  # keys: STATISTICS
    sdri_early: dict[str, float] | None = None


def _statistics(values: Sequence[float]) -> dict[str, float]:
    """Mean, median, min and max of ``values``; NaN for each when there are none."""
    if not values:
        return dict.fromkeys(STATISTICS, float("nan"))
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarize(rows: Sequence[dict[str, str]]) -> list[SettingSummary]:
    """Mean, median, min and max of the mean SDRi per setting (and of ``sdri_early`` where
    the rows have it), in order of first appearance."""
    summaries = []
    early = bool(rows) and "sdri_early" in rows[0]
    for group in group_by_setting(rows):
        ok = succeeded(group)
        stats = _statistics([float(row["sdri"]) for row in ok])
        stats_early = _statistics([float(row["sdri_early"]) for row in ok]) if early else None
        setting = {name: group[0][name] for name in SETTING_COLUMNS}
        summaries.append(SettingSummary(setting, len(ok), len(group) - len(ok), stats, stats_early))
    return summaries


def summary_csv(summaries: Sequence[SettingSummary]) -> str:
    """``summary.csv``: every setting column, the successful and failed run counts and the
    SDRi statistics in dB (``nan`` for a setting whose runs all failed), then ``sdri_early_*``
    when the study has early images."""
    early = bool(summaries) and summaries[0].sdri_early is not None
    header = [*SETTING_COLUMNS, "n_runs", "n_failed", *(f"sdri_{s}" for s in STATISTICS)]
    header += [f"sdri_early_{s}" for s in STATISTICS] if early else []
    lines = [header] + [
        [
            *s.setting.values(),
            str(s.n_runs),
            str(s.n_failed),
            *(str(s.sdri[k]) for k in STATISTICS),
            *(str(s.sdri_early[k]) for k in STATISTICS if s.sdri_early is not None),
        ]
        for s in summaries
    ]
    return csv_lines(lines)


def summary_table(summaries: Sequence[SettingSummary], names: Sequence[str]) -> str:
    """Aligned text: the ``names`` columns (or one ``setting`` column), runs, SDRi stats (dB),
    then the early-image SDRi stats when the study has them.

    A ``failed`` column follows ``runs`` when any run failed; statistics of a setting
    without a successful run show as ``-``.
    """
    failures = any(s.n_failed for s in summaries)
    early = bool(summaries) and summaries[0].sdri_early is not None
    header = [*(names or ["setting"]), "runs", *(["failed"] if failures else []),
              *(f"SDRi {s}" for s in STATISTICS),
              *(f"early {s}" for s in STATISTICS if early)]  # fmt: skip
    rows = [
        [
            *([s.setting[n] for n in names] or ["all runs"]),
            str(s.n_runs),
            *([str(s.n_failed)] if failures else []),
            *(f"{s.sdri[k]:.2f}" if s.n_runs else "-" for k in STATISTICS),
            *(
                f"{s.sdri_early[k]:.2f}" if s.n_runs else "-"
                for k in STATISTICS
                if s.sdri_early is not None
            ),
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
