"""The execution layer: in-process, process pool and Dask give the same results."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from conftest import SAMPLE

from ilrma_cli.cli import cli
from ilrma_cli.errors import IlrmaError
from ilrma_cli.execute import (
    imap_processes,
    imap_runs,
    parse_scheduler,
    report_progress,
    start_processes,
    stop_started_processes,
)

FAST = ["--n-iter", "4", "--n-fft", "1024", "--hop", "512", "--no-progress"]


def square(x: int) -> int:
    return x * x


def report_then_wait(flag: str) -> str:
    """Reports an iteration, then waits for the parent to have seen it (``flag`` appears)."""
    report_progress(1, 0.5)
    deadline = time.monotonic() + 60
    while not Path(flag).exists():
        if time.monotonic() > deadline:
            return "the parent saw no progress while the work ran"
        time.sleep(0.01)
    return "seen"


def test_progress_from_pool_workers_reaches_the_parent_while_they_work(tmp_path):
    flags = [str(tmp_path / f"flag{i}") for i in range(3)]
    seen: list[tuple[int, float]] = []

    def progress(iteration: int, loss: float) -> None:
        seen.append((iteration, loss))
        Path(flags[len(seen) - 1]).touch()  # each event releases one waiting worker

    results = dict(imap_processes(report_then_wait, flags, 2, progress))
    assert results == dict.fromkeys(range(3), "seen")
    assert seen == [(1, 0.5)] * 3


def pid_and_loaded(module: str) -> tuple[int, bool]:
    """The worker's process id, and whether ``module`` is imported in it."""
    return os.getpid(), module in sys.modules


def test_started_processes_serve_the_next_call_that_fits_and_are_ended_if_none_does():
    lone = "xml.dom.minidom"  # a module nothing of ours imports
    start_processes(2, False, preload=[lone])
    started = {p.pid for p in multiprocessing.active_children()}
    assert len(started) == 2  # running before any work is handed out
    runs = dict(imap_processes(pid_and_loaded, [lone] * 4, 2))
    assert {pid for pid, _ in runs.values()} <= started
    assert all(loaded for _, loaded in runs.values())  # imported as they started
    assert not multiprocessing.active_children()
    start_processes(3, False)
    first = {p.pid for p in multiprocessing.active_children()}
    runs = dict(imap_processes(pid_and_loaded, [lone] * 2, 2))  # another size: a new pool
    assert not {pid for pid, _ in runs.values()} & first
    assert not any(loaded for _, loaded in runs.values())
    start_processes(2, True)
    stop_started_processes()  # no call came
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(("jobs", "scheduler"), [(1, None), (2, None), (1, "local:2")])
def test_every_executor_returns_every_result_with_its_index(jobs, scheduler):
    results = dict(imap_runs(square, list(range(7)), jobs, scheduler))
    assert results == {i: i * i for i in range(7)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local:0", "'local:0': local:N needs a number of workers N >= 1"),
        ("local:x", "local:N needs"),
    ],
)
def test_bad_local_scheduler_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        parse_scheduler(value)
    result = CliRunner().invoke(cli, ["separate", str(SAMPLE / "mix.wav"), "--scheduler", value])
    assert result.exit_code == 2 and "Invalid value for --scheduler" in result.stderr


def test_jobs_and_scheduler_together_are_a_usage_error():
    result = CliRunner().invoke(
        cli, ["separate", str(SAMPLE / "mix.wav"), "-j", "2", "--scheduler", "local:2"]
    )
    assert result.exit_code == 2
    assert "use either -j/--jobs or --scheduler, not both" in result.stderr


def test_missing_dask_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(IlrmaError, match=r"pip install 'ilrma-cli\[dask\]'"):
        list(imap_runs(square, [1, 2], scheduler="local:1"))


def _mixtures(folder: Path) -> list[Path]:
    data, rate = sf.read(SAMPLE / "mix.wav")
    folder.mkdir()
    paths = []
    for i in range(3):
        path = folder / f"m{i}.wav"
        sf.write(path, data[i * rate : (i + 2) * rate], rate, subtype="FLOAT")
        paths.append(path)
    bad = folder / "silent.wav"
    sf.write(bad, np.zeros((2 * rate, 2)), rate)
    return [paths[0], bad, *paths[1:]]


def test_dask_batch_equals_local_and_records_a_failure(tmp_path):
    inputs = [str(p) for p in _mixtures(tmp_path / "in")]
    runs = {}
    for name, extra in (("one", []), ("dask", ["--scheduler", "local:2"])):
        result = CliRunner().invoke(
            cli,
            [
                "separate",
                *inputs,
                "-o",
                str(tmp_path / name),
                "--keep-going",
                "--json",
                *FAST,
                *extra,
            ],
        )
        assert result.exit_code == 1, result.output
        assert "silent.wav: the input is digital silence" in result.stderr
        runs[name] = json.loads(result.stdout)["mixtures"]
    assert [m["status"] for m in runs["dask"]] == ["ok", "error", "ok", "ok"]
    assert [m["status"] for m in runs["one"]] == [m["status"] for m in runs["dask"]]
    for m in ("m0", "m1", "m2"):
        for index in (1, 2):
            rel = Path(m) / f"source{index}.wav"
            assert (tmp_path / "dask" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
    assert not (tmp_path / "dask" / "silent").exists()


def fail_with_input_error(item: int) -> int:
    from ilrma_cli.errors import InputError

    raise InputError(f"file{item}.wav", "broken")


@pytest.mark.parametrize(("jobs", "scheduler"), [(2, None), (1, "local:1")])
def test_our_errors_come_back_from_workers_intact(jobs, scheduler):
    from ilrma_cli.errors import InputError

    with pytest.raises(InputError) as err:
        list(imap_runs(fail_with_input_error, [1, 2], jobs, scheduler))
    assert str(err.value) in ("file1.wav: broken", "file2.wav: broken")
