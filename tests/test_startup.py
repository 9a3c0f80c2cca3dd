"""Start-up: ``ilrma --help`` and ``--version`` load no numerical library; the compile notice (issue 16).

Speed itself is measured by ``bench/startup.py``; these tests check the causes,
which do not depend on the machine: which modules a command imports.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from conftest import REPO

from ilrma_cli.cli import COMMANDS, cli
from ilrma_cli.engine.aot import JIT_ENV
from ilrma_cli.firstrun import NOTICE

HEAVY = ("numpy", "scipy", "numba", "soundfile", "matplotlib", "dask", "tqdm")


def _modules_after(code: str) -> set[str]:
    """Every module imported by ``code`` in a fresh interpreter."""
    script = f"{code}\nimport sys\nprint('MODULES', ' '.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(result.stdout.rpartition("MODULES ")[2].split())


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_import_no_numerical_library(option):
    code = (
        f"from ilrma_cli.cli import cli\ntry:\n    cli(['{option}'])\nexcept SystemExit:\n    pass"
    )
    assert {name.split(".")[0] for name in _modules_after(code)} & set(HEAVY) == set()


SEPARATION = """
from ilrma_cli.cli import cli
try:
    cli(['separate', {mix!r}, '-o', {out!r}, '-q', '--no-progress', '--n-iter', '2',
         '--iva-iter', '1', '-j', '1'])  # in this process, whose modules are listed
except SystemExit as stop:
    assert stop.code == 0, stop.code
"""


def test_a_separation_without_refs_imports_neither_scipy_signal_nor_the_metrics(tmp_path):
    """scipy.signal (~1 s), scipy.optimize and scipy.stats are not on the separation path."""
    from conftest import SAMPLE

    modules = _modules_after(SEPARATION.format(mix=str(SAMPLE / "mix.wav"), out=str(tmp_path)))
    assert "ilrma_cli.engine.compiled" in modules  # it did separate
    assert any((tmp_path / "mix").glob("source1.wav"))
    slow = {"scipy.signal", "scipy.optimize", "scipy.stats", "ilrma_cli.metrics", "mir_eval"}
    assert modules & slow == set()


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("limit", [30, 45, 74, 200])
def test_the_command_list_summaries_are_those_of_the_commands(name, limit):
    command = cli.get_command(None, name)  # type: ignore[arg-type]
    assert command is not None and command.name == name
    summary = COMMANDS[name][1]
    assert command.help is not None and " ".join(command.help.split()).startswith(summary)
    assert click.Command(name, help=summary).get_short_help_str(
        limit
    ) == command.get_short_help_str(limit)


def test_an_unknown_command_is_a_usage_error():
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["seperate"])
    assert result.exit_code == 2 and "No such command 'seperate'" in result.stderr


NOTICE_SCRIPT = """
import numba
from ilrma_cli.firstrun import announce_compiles
announce_compiles({enabled})

def ours(x):
    return x + 1
ours.__module__ = "ilrma_cli.engine.fake"

def theirs(x):
    return x + 2

numba.njit(theirs)(1)
compiled = numba.njit(ours)
compiled(1)
compiled(1.5)  # a second specialisation: no second line
numba.njit(ours)(2)
"""


@pytest.mark.parametrize("enabled", [True, False])
def test_a_kernel_compile_is_announced_once_on_stderr(enabled):
    result = subprocess.run(
        [sys.executable, "-c", NOTICE_SCRIPT.format(enabled=enabled)],
        capture_output=True, text=True, check=True, cwd=REPO, env={**os.environ, **JIT_ENV},
    )  # fmt: skip
    assert result.stdout == ""
    assert result.stderr == (NOTICE + "\n" if enabled else "")
