"""Command-line interface: parse, validate, call the library, write.

The subcommands are imported only when one is run (or its help is asked for), so
``ilrma --help`` and ``ilrma --version`` start without numpy, scipy or numba.
"""

from __future__ import annotations

import importlib

import click

from ilrma_cli import __version__

# name -> (module, summary): the summary is the first sentence of the command's help
# (tests/test_startup.py checks that they agree).
COMMANDS = {
    "separate": (
        "ilrma_cli.commands.separate",
        "Separate each mixture in INPUT... into one file per source.",
    ),
    "evaluate": (
        "ilrma_cli.commands.evaluate",
        "Score ESTIMATE files against the --refs files: SDR, SIR, SAR (BSS Eval v3, as "
        "mir_eval's bss_eval_sources), SI-SDR, and which estimate matched which reference.",
    ),
    "sweep": (
        "ilrma_cli.commands.sweep",
        "Separate the mixture INPUT over a grid of settings and seeds and score every run.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from :data:`COMMANDS` when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command = getattr(module, cmd_name)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from the summaries, without importing anything."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ilrma")
def cli() -> None:
    """Determined blind source separation with ILRMA."""


def main() -> None:
    cli()
