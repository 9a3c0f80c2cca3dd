"""What the commands share: option declarations, error handling, options taking several values.

The options of every separation setting are made from the schema
(:data:`ilrma_cli.settings.SETTINGS`) by :func:`settings_options`: ``separate`` takes one
value of each, ``sweep`` a list (a grid axis) of each grid setting, with the same
meaning and limits. :class:`VariadicCommand` turns an :class:`~ilrma_cli.errors.IlrmaError`
into ``Error: <message>`` and its exit code.

click options take a fixed number of values. A :class:`VariadicOption` is declared like a
``multiple=True`` option; a :class:`VariadicCommand` rewrites ``--refs a b c`` into
``--refs a --refs b --refs c`` before click parses the arguments. The list of values ends at
the next option (any token starting with ``-``) or at ``--``, which click then reads as the
end of options, so positional arguments may follow: ``--refs a.wav b.wav -- est1.wav``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import click

from ilrma_cli.errors import IlrmaError
from ilrma_cli.execute import parse_scheduler
from ilrma_cli.settings import (
    AUTO,
    GRID_SETTINGS,
    SETTINGS,
    SWEEP_SETTINGS,
    Setting,
    check_stft_sizes,
)
from ilrma_cli.study.grid import parse_flag_grid, parse_grid

F = TypeVar("F", bound=Callable[..., Any])


class VariadicOption(click.Option):
    """An option taking one or more values, all the non-option tokens that follow it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)


class VariadicCommand(click.Command):
    """A command of ours: :class:`VariadicOption` options consume every value that follows
    them, and an :class:`IlrmaError` becomes ``Error: <message>`` and its exit code.

    With ``--json``, a failure (exit 1, 130, 143) before the command printed its document
    still prints one: ``{"error": <message>, "exit_code": <code>}`` (a command that has
    printed its own sets ``ctx.meta["json_printed"]``). A usage error (exit 2) prints
    only its message, on stderr.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names = {
            name
            for param in self.params
            if isinstance(param, VariadicOption)
            for name in param.opts
        }
        return super().parse_args(ctx, expand_variadic(args, names, ctx))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IlrmaError as err:
            self._json_error(ctx, str(err), err.exit_code)
            click.echo(f"Error: {err}", err=True)
            ctx.exit(err.exit_code)

    @staticmethod
    def _json_error(ctx: click.Context, message: str, exit_code: int) -> None:
        if ctx.params.get("as_json") and not ctx.meta.get("json_printed"):
            print_json_error(message, exit_code)


def print_json_error(message: str, exit_code: int) -> None:
    """The one JSON document of a command that failed before it had results."""
    click.echo(json.dumps({"error": message, "exit_code": exit_code}, indent=2))


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


class GridCommand(VariadicCommand):
    """``sweep``: a flag setting given a list (``--no-normalize=no,yes``) is a grid axis."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_flag_lists(args))


def check_executor(jobs: int | None, scheduler: str | None) -> None:
    """Usage errors (exit 2) for a malformed ``--scheduler`` or one given with ``-j N``."""
    if scheduler is None:
        return
    try:
        parse_scheduler(scheduler)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--scheduler") from None
    if jobs is not None and jobs > 1:
        raise click.UsageError("use either -j/--jobs or --scheduler, not both")


def check_stft_options(
    n_fft: int | None | list[int | None], hop: int | None | list[int | None]
) -> None:
    """Usage errors (exit 2, naming ``--hop``) for STFT sizes that cannot go together.

    ``n_fft`` and ``hop`` are one value (``separate``) or the lists of a grid (``sweep``).
    """
    frames = [n for n in (n_fft if isinstance(n_fft, list) else [n_fft]) if n is not None]
    hops = [h for h in (hop if isinstance(hop, list) else [hop]) if h is not None]
    try:
        check_stft_sizes(min(frames) if frames else None, max(hops) if hops else None)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--hop") from None


def stacked(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, listed in ``--help`` in the order given."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _kind(setting: Setting) -> click.ParamType:
    """The click type of one value of ``setting``."""
    if setting.choices:
        return click.Choice(setting.choices)
    if setting.kind is float:
        return click.FloatRange(min=setting.minimum, min_open=setting.open_minimum)
    return click.IntRange(min=None if setting.minimum is None else int(setting.minimum))


def setting_option(setting: Setting) -> Callable[[F], F]:
    """The one-value option of ``setting`` (``separate``; ``sweep`` for a fixed one and flags)."""
    if setting.kind is bool:
        return click.option(setting.option, setting.name, is_flag=True,
                            flag_value=not setting.default, default=setting.default,
                            help=f"{setting.help}.")  # fmt: skip
    shown = f"  [default: {setting.default_text}]" if setting.default_text else ""
    return click.option(setting.option, setting.name, type=_kind(setting),
                        default=setting.default, show_default=setting.default_text is None,
                        help=f"{setting.help}.{shown}")  # fmt: skip


def grid_option(setting: Setting) -> Callable[[F], F]:
    """The list option of ``sweep``: a grid axis (``auto`` for an automatic default)."""
    default = AUTO if setting.default is None else str(setting.default)
    kinds = f" ({', '.join(setting.choices)})" if setting.choices else ""
    auto = "; auto: as separate" if setting.default is None else ""
    return click.option(setting.option, setting.name, metavar="LIST", default=default,
                        show_default=True, callback=partial(_parse_grid, setting),
                        help=f"{setting.help}{kinds}; a list is a grid axis, e.g. "
                             f"{setting.example}{auto}.")  # fmt: skip


def _flag_values_option(setting: Setting) -> str:
    return f"{setting.option}-values"


def flag_grid_option(setting: Setting) -> Callable[[F], F]:
    """The hidden list of a flag's values in ``sweep``, where ``--no-normalize=no,yes`` lands."""
    return click.option(_flag_values_option(setting), f"{setting.name}_values", hidden=True,
                        default=None, callback=partial(_parse_flag_grid, setting))  # fmt: skip


def _parse_grid(setting: Setting, ctx: click.Context, param: click.Parameter, value: str) -> list:
    try:
        return parse_grid(value, setting)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param) from None


def _parse_flag_grid(
    setting: Setting, ctx: click.Context, param: click.Parameter, value: str | None
) -> list[bool] | None:
    """The setting's values for a list of the flag's (``no,yes``: absent, then given)."""
    if value is None:
        return None
    try:
        given = parse_flag_grid(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx, param_hint=f"'{setting.option}'") from None
    return [not setting.default if flag else setting.default for flag in given]


def settings_options(command: str) -> Callable[[F], F]:
    """The option of every setting ``command`` (``separate`` or ``sweep``) takes, in order."""
    decorators = []
    for setting in SETTINGS:
        if command == "separate" or setting.sweep == "fixed":
            decorators.append(setting_option(setting))
        elif setting.sweep == "grid" and setting.kind is bool:
            decorators += [setting_option(setting), flag_grid_option(setting)]
        elif setting.sweep == "grid":
            decorators.append(grid_option(setting))
    return stacked(*decorators)


def sweep_grid(params: dict[str, Any]) -> dict[str, list]:
    """The values of every sweep setting from the parsed options (a fixed one: one value).

    A flag gives its setting the flag's value, or the values of ``--flag=LIST``
    (a usage error when both are given).
    """
    grid = {}
    for setting in SWEEP_SETTINGS:
        value = params.pop(setting.name)
        listed = params.pop(f"{setting.name}_values", None)
        if listed is not None and value != setting.default:
            raise click.UsageError(f"give {setting.option} or {setting.option}=LIST, not both")
        grid[setting.name] = listed if listed is not None else value
        if not isinstance(grid[setting.name], list):
            grid[setting.name] = [grid[setting.name]]
    return grid


def rewrite_flag_lists(args: list[str]) -> list[str]:
    """``--no-normalize=no,yes`` -> ``--no-normalize-values no,yes`` (a flag made a grid axis)."""
    flags = {s.option: _flag_values_option(s) for s in GRID_SETTINGS if s.kind is bool}
    rewritten: list[str] = []
    for position, token in enumerate(args):
        if token == "--":
            return rewritten + args[position:]
        option, equals, value = token.partition("=")
        rewritten += [flags[option], value] if equals and option in flags else [token]
    return rewritten


# The settings both commands take as values: one in separate, a list (grid axis) in sweep.
VALUE_SETTINGS = tuple(s for s in GRID_SETTINGS if s.kind is not bool)

pad_option = click.option(
    "--pad", is_flag=True, help="Zero-pad mono microphone files to the longest."
)


def execution_options(jobs_help: str, auto_jobs: str | None = None) -> Callable[[F], F]:
    """``-j/--jobs`` (what runs in parallel: ``jobs_help``), ``--scheduler`` and ``--threads``.

    With ``auto_jobs`` (what the default is) ``jobs`` is None unless given; else 1.
    """
    default = f"[default: {auto_jobs}]" if auto_jobs else "[default: 1]"
    return stacked(
        click.option("-j", "--jobs", type=click.IntRange(min=1), default=None if auto_jobs else 1,
                     help=f"Worker processes, one BLAS thread each: {jobs_help} {default}."),
        click.option("--scheduler", default=None, metavar="ADDRESS|local:N",
                     help="Run on a Dask cluster (tcp://host:8786), or on local:N workers."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Threads per process for the sweeps over frequencies [default: the "
                          "usable cores divided by the processes at work; 1 on Dask]. Any "
                          "count gives the same bits."),
    )  # fmt: skip


report_options = stacked(
    click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
    click.option("-v", "--verbose", is_flag=True, help="Details on stderr."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
    click.option(
        "--json", "as_json", is_flag=True, help="One JSON document on stdout, nothing else."
    ),
)
