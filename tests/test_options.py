"""Options `separate` and `sweep` share are declared once: same help, same limits."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from ilrma_cli.cli import cli
from ilrma_cli.commands.options import VALUE_SETTINGS

# --jobs says what runs in parallel in each command (issue 16); it is checked apart below.
SHARED = ("--no-normalize", "--ref-mic", "--pad", "--scheduler", "--quiet",
          "--verbose", "--no-progress", "--json")  # fmt: skip


def params_by_flag(command: str) -> dict[str, object]:
    return {flag: param for param in cli.commands[command].params for flag in param.opts}


def help_entries(command: str) -> dict[str, str]:
    """``--help`` output of ``command``: each option's help text, rewrapped to one line."""
    result = CliRunner().invoke(cli, [command, "--help"], prog_name="ilrma")
    assert result.exit_code == 0, result.output
    entries: dict[str, str] = {}
    flag = None
    for line in result.stdout.split("Options:\n", 1)[1].splitlines():
        if line.startswith("  -"):  # "  -j, --jobs INTEGER RANGE  help...": help may wrap
            name, _, text = line.strip().partition("  ")
            flag = re.findall(r"--[\w-]+", name)[0]
            entries[flag] = text
        elif flag is not None:  # a line broken at a hyphen joins without a space
            entries[flag] += ("" if entries[flag].endswith("-") else " ") + line.strip()
    return {flag: " ".join(text.split()) for flag, text in entries.items()}


def test_shared_options_have_the_same_declaration_and_help_in_both_commands():
    separate, sweep = params_by_flag("separate"), params_by_flag("sweep")
    separate_help, sweep_help = help_entries("separate"), help_entries("sweep")
    for flag in SHARED:
        ours, theirs = separate[flag], sweep[flag]
        assert (ours.opts, ours.help, ours.default, repr(ours.type)) == (
            theirs.opts, theirs.help, theirs.default, repr(theirs.type)
        ), flag  # fmt: skip
        assert separate_help[flag] == sweep_help[flag] != "", flag
    assert "[default: 0; x>=0]" in separate_help["--ref-mic"]


def test_settings_mean_the_same_in_both_commands():
    separate_help, sweep_help = help_entries("separate"), help_entries("sweep")
    for setting in VALUE_SETTINGS:
        meaning = " ".join(setting.help.split())
        assert separate_help[setting.option].startswith(meaning + "."), setting.option
        assert sweep_help[setting.option].startswith(meaning), setting.option
        assert "a list is a grid axis" in sweep_help[setting.option]


@pytest.mark.parametrize(
    ("flag", "value"), [("--n-fft", "1"), ("--hop", "0"), ("--n-basis", "0"),
                        ("--iva-iter", "-1"), ("--window", "box"), ("--update", "foo")]
)  # fmt: skip
def test_both_commands_refuse_the_same_values(tmp_path, flag, value):
    for command in (["separate", "x.wav"], ["sweep", "x.wav", "--refs", "r.wav", "-o", tmp_path]):
        args = [*map(str, command), f"{flag}={value}"]
        result = CliRunner().invoke(cli, args, prog_name="ilrma")
        assert result.exit_code == 2, (command, result.output)
        assert f"'{flag}'" in result.stderr, (command, result.stderr)
