"""Options that take several values: ``--refs a.wav b.wav c.wav``.

click options take a fixed number of values. A :class:`VariadicOption` is declared like a
``multiple=True`` option; a :class:`VariadicCommand` rewrites ``--refs a b c`` into
``--refs a --refs b --refs c`` before click parses the arguments. The list of values ends at
the next option (any token starting with ``-``) or at ``--``, which click then reads as the
end of options, so positional arguments may follow: ``--refs a.wav b.wav -- est1.wav``.
"""

from __future__ import annotations

from typing import Any

import click

from ilrma_cli.execute import parse_scheduler


class VariadicOption(click.Option):
    """An option taking one or more values, all the non-option tokens that follow it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)


class VariadicCommand(click.Command):
    """A command whose :class:`VariadicOption` options consume every value that follows them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {
            name
            for param in self.params
            if isinstance(param, VariadicOption)
            for name in param.opts
        }
        return super().parse_args(ctx, expand_variadic(args, names, ctx))


def expand_variadic(
    args: list[str], names: set[str], ctx: click.Context | None = None
) -> list[str]:
    """Repeat the option name before each of its values; ``--name=value`` starts a list too.

    Raises :class:`click.BadOptionUsage` (exit code 2) for an option given no value.
    """
    expanded: list[str] = []
    position = 0
    while position < len(args):
        token = args[position]
        position += 1
        if token == "--":
            return expanded + args[position - 1 :]
        option, equals, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if option not in names:
            expanded.append(token)
            continue
        values = [inline] if equals else []
        while position < len(args) and not args[position].startswith("-"):
            values.append(args[position])
            position += 1
        if not values:
            raise click.BadOptionUsage(
                option, f"Option '{option}' requires at least one value.", ctx
            )
        for value in values:
            expanded += [option, value]
    return expanded


def check_executor(jobs: int, scheduler: str | None) -> None:
    """Usage errors (exit 2) for a malformed ``--scheduler`` or one given with ``-j N``."""
    if scheduler is None:
        return
    try:
        parse_scheduler(scheduler)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--scheduler") from None
    if jobs > 1:
        raise click.UsageError("use either -j/--jobs or --scheduler, not both")
