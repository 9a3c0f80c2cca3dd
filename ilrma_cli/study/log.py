"""A study's run log: two files in its folder, only ever appended to while runs finish.

``runs.csv``
    one row per finished run: its key, input, every setting, seed, scores (also against
    the early images when the study has them), loss, time, and its ``status``: ``ok``, or ``failed`` with the ``error`` (scores left empty);
``losses.jsonl``
    one line per successful run: ``{"key": ..., "loss": [...]}`` (written before its row).

A rerun skips the runs logged with status ``ok`` and retries the failed ones (their new
row replaces the old). A line torn by a crash is cut off before the next append.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ilrma_cli.atomic import append_durably, write_atomically
from ilrma_cli.study.grid import OK, SETTING_COLUMNS

RUNS_FILE = "runs.csv"
LOSSES_FILE = "losses.jsonl"


def columns(n_sources: int, early: bool = False) -> list[str]:
    """Header of ``runs.csv`` for a study of ``n_sources`` sources (``early``: with early images)."""
    return ["key", "input", "data_id", *SETTING_COLUMNS, "seed",
            *result_columns(n_sources, early), "seconds", "status", "error"]  # fmt: skip


def result_columns(n_sources: int, early: bool = False) -> list[str]:
    """The columns of ``runs.csv`` that only a successful run fills: ``sdr_1``, ``sir_1``,
    ..., ``sdri``, and with ``early`` the same against the early images (``sdr_early_1``,
    ..., ``sdri_early``)."""
    kinds = ["", "_early"] if early else [""]
    metrics = ("sdr", "sir", "sar")
    scores = [f"{m}{k}_{j}" for k in kinds for j in range(1, n_sources + 1) for m in metrics]
    return [*scores, *(f"sdri{k}" for k in kinds), "final_loss", "iterations"]


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
            append_durably(self.losses_path, line)
        new = not self.runs_path.exists() or self.runs_path.stat().st_size == 0
        lines = ([self.header] if new else []) + [[row[name] for name in self.header]]
        append_durably(self.runs_path, csv_lines(lines))

    def sort(self, keys: Sequence[str]) -> None:
        """Rewrite ``runs.csv`` with ``keys`` first in that order (the others after, as they were)."""
        rows = self.load()
        rank = {key: i for i, key in enumerate(keys)}
        ordered = sorted(rows.values(), key=lambda row: rank.get(row["key"], len(rank)))
        lines = [self.header] + [[row[name] for name in self.header] for row in ordered]
        write_atomically(self.runs_path, csv_lines(lines))


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


def csv_lines(lines: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()
