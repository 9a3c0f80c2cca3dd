"""Command-line interface: parse, validate, call the library, write."""

from __future__ import annotations

import click

from ilrma_cli import __version__
from ilrma_cli.commands.evaluate import evaluate
from ilrma_cli.commands.separate import separate
from ilrma_cli.commands.sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ilrma")
def cli() -> None:
    """Determined blind source separation with ILRMA."""


cli.add_command(separate)
cli.add_command(evaluate)
cli.add_command(sweep)


def main() -> None:
    cli()
