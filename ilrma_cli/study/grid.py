"""A study's grid: list options parsed, runs planned, each run's identity.

No click: grids are parsed from strings (``ValueError`` with a message the command line
shows as is) and runs planned as plain data. A run's key hashes the input and reference
contents, every setting and the seed, so a rerun recognises the runs logged already.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ilrma_cli.settings import AUTO, BY_NAME, SWEEP_SETTINGS, SeparationSettings, Setting

# Setting columns of the study's CSV files, in order: what a sweep varies or fixes.
SETTING_COLUMNS = tuple(setting.name for setting in SWEEP_SETTINGS)
OK, FAILED = "ok", "failed"
FLAG_WORDS = {"yes": True, "no": False, "on": True, "off": False, "true": True, "false": False}


def parse_grid(text: str, setting: Setting) -> list:
    """The values of ``setting`` listed in ``text`` (``auto`` for an automatic default: [None])."""
    if text.strip() == AUTO and setting.default is None:
        return [None]
    if setting.choices:
        return parse_name_grid(text, setting.choices)
    minimum = setting.minimum if setting.grid_minimum is None else setting.grid_minimum
    if setting.kind is float:
        return parse_float_grid(text, minimum or 0.0, setting.open_minimum)
    return parse_int_grid(text, int(minimum or 0))


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


def parse_float_grid(text: str, minimum: float = 0.0, open_minimum: bool = False) -> list[float]:
    """Numbers from ``"1"`` or ``"0.5,1,2"``, each at least (or above) ``minimum``; repeats dropped."""
    values: list[float] = []
    for part in text.replace(" ", "").split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{part!r} is not a number") from None
        if value < minimum or (open_minimum and value == minimum) or value != value:
            relation = "above" if open_minimum else "at least"
            raise ValueError(f"{part} is not {relation} {minimum:g}")
        if value not in values:
            values.append(value)
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


def parse_flag_grid(text: str) -> list[bool]:
    """Whether a flag is given, for each of ``"no,yes"`` (also on/off, true/false)."""
    values: list[bool] = []
    for part in text.replace(" ", "").lower().split(","):
        if part not in FLAG_WORDS:
            raise ValueError(f"{part!r} is not yes or no")
        if FLAG_WORDS[part] not in values:
            values.append(FLAG_WORDS[part])
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
    """The setting columns of ``settings`` as CSV text."""
    return {name: str(settings.value(name)) for name in SETTING_COLUMNS}


def typed(setting: dict[str, str]) -> dict[str, object]:
    """Setting columns read back as their values (numbers, booleans; for JSON)."""
    return {name: BY_NAME[name].parse(value) for name, value in setting.items()}


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
    grid: Mapping[str, Sequence[object]],
    seeds: Sequence[int],
    data_id: str,
    rate: int,
    n_samples: int,
) -> list[Run]:
    """The cartesian product of ``grid`` (values of every :data:`SETTING_COLUMNS` name) and ``seeds``.

    Settings vary in column order, the seed fastest; an automatic STFT (``n_fft`` None)
    is :func:`~ilrma_cli.settings.auto_stft` of ``n_samples`` at ``rate``, as in ``separate``. Raises
    ``ValueError`` for an invalid combination (such as a hop longer than the frame).
    """
    runs = []
    for values in itertools.product(*(grid[name] for name in SETTING_COLUMNS), seeds):
        chosen = dict(zip((*SETTING_COLUMNS, "seed"), values, strict=True))
        # One run per seed: a study spreads the seeds itself (not the mean of --restarts).
        chosen["restarts"] = 1
        settings = SeparationSettings.from_values(chosen).for_rate(rate, n_samples)
        runs.append(Run(settings, run_key(data_id, settings)))
    return runs
