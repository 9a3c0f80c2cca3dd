"""Logging to stderr for the command line (stdout is kept for results)."""

from __future__ import annotations

import logging
import sys


def setup_logging(quiet: bool, verbose: bool) -> None:
    """Warnings by default, errors only with ``quiet``, everything with ``verbose``."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.WARNING
    logger = logging.getLogger("ilrma")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
