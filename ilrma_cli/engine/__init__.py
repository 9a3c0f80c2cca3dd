"""The separation engine: arrays in, arrays out, progress through a callback.

:func:`run` is the front door (:mod:`ilrma_cli.engine.run`); settings, initial state and
result types are in :mod:`ilrma_cli.engine.types`.
"""

from ilrma_cli.engine.projection_back import mixing_matrices, project_back
from ilrma_cli.engine.run import choose_backend, run
from ilrma_cli.engine.spatial import UPDATES
from ilrma_cli.engine.types import (
    FULLRANK_WEIGHTS,
    MODELS,
    PRECISIONS,
    RULES,
    SPATIAL_MODELS,
    Callback,
    ILRMAConfig,
    InitialState,
    Result,
)

__all__ = [
    "FULLRANK_WEIGHTS",
    "MODELS",
    "PRECISIONS",
    "RULES",
    "SPATIAL_MODELS",
    "UPDATES",
    "Callback",
    "ILRMAConfig",
    "InitialState",
    "Result",
    "choose_backend",
    "mixing_matrices",
    "project_back",
    "run",
]
