"""Errors the user can act on: plain exceptions with a one-line message and an exit code.

The command line (:mod:`ilrma_cli.commands`) prints them as ``Error: <message>`` and exits
with :attr:`IlrmaError.exit_code`; the library raises them without knowing about click.
Each is picklable, so it can leave a worker process or a Dask worker intact.
"""

from __future__ import annotations


class IlrmaError(Exception):
    """A failure the user can act on: ``str(error)`` is the message, exit code 1."""

    exit_code = 1


class _FileError(IlrmaError):
    """An error about one file: ``<path>: <problem>``; picklable, so it can leave a worker."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[object, str]]:
        return type(self), (self.path, self.problem)


class InputError(_FileError):
    """An input file is missing, unreadable or unusable."""


class OutputError(_FileError):
    """An output location cannot be written."""


class ProcessingError(IlrmaError):
    """The separation itself failed on valid input."""


class Interrupted(IlrmaError):
    """Stopped by SIGINT (exit 130) or SIGTERM (exit 143); unfinished outputs were removed."""

    def __init__(self, signal_name: str, exit_code: int, what: str) -> None:
        super().__init__(f"interrupted by {signal_name}: {what}")
        self.exit_code = exit_code
        self._args = (signal_name, exit_code, what)

    def __reduce__(self) -> tuple[type, tuple[str, int, str]]:
        return type(self), self._args
