"""Errors the command line turns into one-line messages and exit codes."""

from __future__ import annotations

import click


class IlrmaError(click.ClickException):
    """A failure the user can act on: printed as ``Error: <message>``, exit code 1."""

    exit_code = 1


class InputError(IlrmaError):
    """An input file is missing, unreadable or unusable."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class OutputError(IlrmaError):
    """An output location cannot be written."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ProcessingError(IlrmaError):
    """The separation itself failed on valid input."""


class Interrupted(IlrmaError):
    """Stopped by SIGINT (exit 130) or SIGTERM (exit 143); unfinished outputs were removed."""

    def __init__(self, signal_name: str, exit_code: int, what: str) -> None:
        super().__init__(f"interrupted by {signal_name}: {what}")
        self.exit_code = exit_code
