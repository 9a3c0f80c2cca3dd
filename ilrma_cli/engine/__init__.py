"""ILRMA on numpy arrays (arrays in, arrays out, progress through a callback); compiled sweeps."""

from ilrma_cli.engine.demix import UPDATES
from ilrma_cli.engine.ilrma import ILRMAConfig, Result, negative_log_likelihood, run
from ilrma_cli.engine.scaling import project_back

__all__ = ["UPDATES", "ILRMAConfig", "Result", "negative_log_likelihood", "project_back", "run"]
