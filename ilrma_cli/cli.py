"""Command-line interface: parse, validate, call the library, write.

The subcommands are imported only when one is run (or its help is asked for), so
``ilrma --help`` and ``ilrma --version`` start without numpy, scipy or numba.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

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


class LazyCommands(MutableMapping[str, click.Command]):
    """The subcommands by name, each imported from :data:`COMMANDS` on first access."""

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            command = getattr(importlib.import_module(COMMANDS[name][0]), name)
            assert isinstance(command, click.Command)
            self._loaded[name] = command
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*COMMANDS, *self._loaded]))


class LazyGroup(click.Group):
    """A group whose subcommands are imported when first needed (:class:`LazyCommands`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

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
