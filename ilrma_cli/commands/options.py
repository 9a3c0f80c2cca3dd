"""Options shared by the commands, declared once, and options that take several values.

:class:`Setting` declares a separation setting once: ``separate`` takes one value of it,
``sweep`` a list (a grid axis), with the same meaning and limits; the decorators below
(:func:`ref_mic_option`, :func:`execution_options`, ...) are the options both commands have.

click options take a fixed number of values. A :class:`VariadicOption` is declared like a
``multiple=True`` option; a :class:`VariadicCommand` rewrites ``--refs a b c`` into
``--refs a --refs b --refs c`` before click parses the arguments. The list of values ends at
the next option (any token starting with ``-``) or at ``--``, which click then reads as the
end of options, so positional arguments may follow: ``--refs a.wav b.wav -- est1.wav``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ilrma_cli import study
from ilrma_cli.engine import UPDATES
from ilrma_cli.execute import parse_scheduler
from ilrma_cli.stft import WINDOWS

F = TypeVar("F", bound=Callable[..., Any])


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


def stacked(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, listed in ``--help`` in the order given."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


@dataclass(frozen=True)
class Setting:
    """A separation setting: one value for ``separate``, a list (grid axis) for ``sweep``.

    ``meaning`` starts the help text of both; integers have a ``minimum``, names ``choices``.
    """

    flag: str
    meaning: str
    example: str
    minimum: int = 0
    choices: tuple[str, ...] = ()

    def option(self, default: object, *, default_text: str | None = None) -> Callable[[F], F]:
        """The one-value option of ``separate``; ``default_text`` replaces the shown default."""
        kind = click.Choice(self.choices) if self.choices else click.IntRange(min=self.minimum)
        shown = f"  [default: {default_text}]" if default_text else ""
        return click.option(self.flag, type=kind, default=default,
                            show_default=default_text is None, help=f"{self.meaning}.{shown}")  # fmt: skip

    def grid_option(self, default: str, minimum: int | None = None) -> Callable[[F], F]:
        """The list option of ``sweep`` (``minimum`` overrides the setting's own)."""
        return click.option(self.flag, metavar="LIST", default=default, show_default=True,
                            callback=self._grid_parser(minimum), help=self.grid_help)  # fmt: skip

    @property
    def grid_help(self) -> str:
        kinds = f" ({', '.join(self.choices)})" if self.choices else ""
        return f"{self.meaning}{kinds}; a list is a grid axis, e.g. {self.example}."

    def _grid_parser(self, minimum: int | None) -> Callable[[click.Context, click.Parameter, str], list]:  # fmt: skip
        def parse(ctx: click.Context, param: click.Parameter, value: str) -> list:
            try:
                if self.choices:
                    return study.parse_name_grid(value, self.choices)
                return study.parse_int_grid(value, self.minimum if minimum is None else minimum)
            except ValueError as err:
                raise click.BadParameter(str(err), ctx, param) from None

        return parse


N_FFT = Setting("--n-fft", "STFT frame length in samples, any size", "1024,2048,4096", minimum=2)
HOP = Setting("--hop", "STFT hop in samples, at most --n-fft", "512,1024", minimum=1)
WINDOW = Setting("--window", "STFT window", "hann,hamming", choices=WINDOWS)
N_BASIS = Setting("--n-basis", "NMF bases per source", "2-9, 2,4,8 or 2-9:2", minimum=1)
N_ITER = Setting("--n-iter", "ILRMA iterations", "50,100,200")
IVA_ITER = Setting(
    "--iva-iter",
    "IVA iterations before ILRMA, a permutation-free start for the NMF model (0: none)",
    "0,20",
)
UPDATE = Setting("--update", "Demixing update rule", "ip,iss", choices=tuple(sorted(UPDATES)))
SETTINGS = (N_FFT, HOP, WINDOW, N_BASIS, N_ITER, IVA_ITER, UPDATE)

no_normalize_option = click.option(
    "--no-normalize", is_flag=True, help="Skip the per-iteration power normalisation."
)
ref_mic_option = click.option(
    "--ref-mic",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Microphone (0-based) the sources are scaled to and scored at "
    "(the channel read from multichannel --refs).",
)
pad_option = click.option(
    "--pad", is_flag=True, help="Zero-pad mono microphone files to the longest."
)
execution_options = stacked(
    click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Worker processes, one BLAS thread each: mixtures (or the restarts of a single "
        "mixture) in parallel for separate, runs for sweep.",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="ADDRESS|local:N",
        help="Run on a Dask cluster (tcp://host:8786), or on local:N workers.",
    ),
)
report_options = stacked(
    click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
    click.option("-v", "--verbose", is_flag=True, help="Details on stderr."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
    click.option(
        "--json", "as_json", is_flag=True, help="One JSON document on stdout, nothing else."
    ),
)
