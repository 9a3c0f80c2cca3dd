"""The engine's settings, initial state and result; imports nothing else from the engine.

Shapes used throughout the engine: mixture spectrogram ``obs`` ``(n_channels, n_freq,
n_frames)``; demixing matrices ``demix`` ``(n_freq, n_sources, n_channels)`` whose row
n is ``w_n^H``; NMF ``basis`` ``(n_sources, n_freq, n_basis)`` and ``activation``
``(n_sources, n_basis, n_frames)`` (the partitioned model shares one basis, see
:mod:`ilrma_cli.engine.source_models`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the type only: this module imports nothing from the engine at run time
    from ilrma_cli.engine.fullrank import FullRankModel

# Called after each iteration with (iteration, loss); loss is NaN when it is not
# computed. Returning True stops the run after that iteration (the demixing
# matrices are those of that iteration; the NMF factors may have had one more update).
Callback = Callable[[int, float], bool | None]
# Without record_loss a callback still sees the loss of every SHOWN_LOSS_EVERY-th
# iteration of a stage (and of its last): enough for a progress bar, at a tenth of the
# cost of the log terms of every bin.
SHOWN_LOSS_EVERY = 10


def loss_wanted(record_loss: bool, callback: Callback | None, it: int, n_iter: int) -> bool:
    """Whether iteration ``it`` of ``n_iter`` computes the loss (:data:`SHOWN_LOSS_EVERY`)."""
    shown = callback is not None and it % SHOWN_LOSS_EVERY == 0
    return record_loss or it == n_iter or shown


# Demixing rules (ilrma_cli.engine.spatial) and source models (ilrma_cli.engine.source_models).
RULES = ("ip", "ip2", "iss")
MODELS = ("gauss", "t", "partition")
# Spatial models: one demixing row per source (ILRMA), or full-rank covariances refined
# from that solution (FastMNMF2, ilrma_cli.engine.fullrank).
SPATIAL_MODELS = ("rank1", "fullrank")
# The full-rank model's spatial weights: one set per source shared by every frequency
# (FastMNMF2), one per source and frequency (FastMNMF1), or restarts that take turns
# (ilrma_cli.pipeline.restart_config; a run on its own is then shared).
FULLRANK_WEIGHTS = ("shared", "frequency", "alternate")
# Type of the spectrograms (the mixture's and the separated one); iterations run in float64.
PRECISIONS: dict[str, type[np.complexfloating]] = {"single": np.complex64, "double": np.complex128}
BACKENDS = ("auto", "compiled", "reference")


@dataclass(frozen=True)
class ILRMAConfig:
    """Settings of one engine run (validated on construction).

    The source model is chosen by ``model`` (``gauss``, ``t`` with ``dof``, or
    ``partition``) with ``n_basis`` bases per source; the spatial model is rank 1
    (one demixing row per source and frequency) updated by ``update``, and with
    ``spatial="fullrank"`` then refined by ``fullrank_iter`` iterations of the full-rank
    model (Gaussian NMF only; spatial weights as ``fullrank_weights`` says). With ``taps`` L > 0 the demixing is convolutional:
    ``y_t = W x_t - sum_{l<L} G_l x_{t-delay-l}`` (joint dereverberation and separation;
    ``iss`` is then T-ISS, and ``ip`` updates the filters jointly with ``W`` every
    ``tap_refresh`` iterations, IP on the outputs between: :func:`ilrma_cli.engine.taps.taps_rule`).
    """

    n_basis: int = 2
    n_iter: int = 100
    update: str = "ip"
    normalize: bool = True
    record_loss: bool = True  # the loss after every iteration; False: after the last only
    precision: str = "double"  # single: complex64 spectrograms; the iterations run in float64
    model: str = "gauss"
    dof: float = 1.0  # degrees of freedom of the t model
    iva_iter: int = 0  # IVA iterations before the ILRMA ones (ilrma_cli.engine.init)
    spatial: str = "rank1"
    fullrank_iter: int = 100
    fullrank_basis: int = 16  # NMF bases per source of the full-rank model (refitted)
    fullrank_weights: str = "shared"  # its spatial weights: FULLRANK_WEIGHTS
    taps: int = 0  # past frames of the dereverberation filter (0: none; ilrma_cli.engine.taps)
    delay: int = 2  # prediction delay in frames before the first tap
    tap_refresh: int = 1  # with taps and ip: the joint update every N iterations (taps.taps_rule)

    def __post_init__(self) -> None:
        if not isinstance(self.n_basis, int | np.integer) or self.n_basis < 1:
            raise ValueError(f"n_basis must be an integer >= 1, got {self.n_basis!r}")
        if not isinstance(self.n_iter, int | np.integer) or self.n_iter < 0:
            raise ValueError(f"n_iter must be an integer >= 0, got {self.n_iter!r}")
        if self.update not in RULES:
            raise ValueError(f"unknown update {self.update!r}; choose one of {', '.join(RULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if not self.dof > 0:
            raise ValueError(f"dof must be positive, got {self.dof!r}")
        if not isinstance(self.iva_iter, int | np.integer) or self.iva_iter < 0:
            raise ValueError(f"iva_iter must be an integer >= 0, got {self.iva_iter!r}")
        if self.spatial not in SPATIAL_MODELS:
            raise ValueError(
                f"unknown spatial model {self.spatial!r}; choose one of {', '.join(SPATIAL_MODELS)}"
            )
        if not isinstance(self.fullrank_iter, int | np.integer) or self.fullrank_iter < 0:
            raise ValueError(f"fullrank_iter must be an integer >= 0, got {self.fullrank_iter!r}")
        if not isinstance(self.fullrank_basis, int | np.integer) or self.fullrank_basis < 1:
            raise ValueError(f"fullrank_basis must be an integer >= 1, got {self.fullrank_basis!r}")
        if self.fullrank_weights not in FULLRANK_WEIGHTS:
            raise ValueError(
                f"unknown fullrank_weights {self.fullrank_weights!r}; choose one of "
                f"{', '.join(FULLRANK_WEIGHTS)}"
            )
        if self.spatial == "fullrank" and self.model != "gauss":
            raise ValueError(
                f"the full-rank spatial model runs the gauss model, not {self.model!r}"
            )
        if not isinstance(self.taps, int | np.integer) or self.taps < 0:
            raise ValueError(f"taps must be an integer >= 0, got {self.taps!r}")
        if not isinstance(self.delay, int | np.integer) or self.delay < 1:
            raise ValueError(f"delay must be an integer >= 1, got {self.delay!r}")
        if not isinstance(self.tap_refresh, int | np.integer) or self.tap_refresh < 1:
            raise ValueError(f"tap_refresh must be an integer >= 1, got {self.tap_refresh!r}")
        if self.spatial == "fullrank" and self.taps:
            raise ValueError("the full-rank spatial model does not run with taps > 0")

    @property
    def total_iter(self) -> int:
        """Iterations a run reports through its callback: ILRMA's, then the full-rank ones."""
        return self.n_iter + (self.fullrank_iter if self.spatial == "fullrank" else 0)

    @property
    def complex_dtype(self) -> type[np.complexfloating]:
        """Type of the separated spectrogram: complex64 in single precision, else complex128."""
        return PRECISIONS[self.precision]


@dataclass(frozen=True)
class InitialState:
    """A given starting point; any part left ``None`` is made as usual.

    In the caller's scale: ``demix @ obs`` are the outputs and ``basis @ activation``
    models their power (as in a :class:`Result`, so a result can seed another run).
    ``demix`` ``(n_freq, n_sources, n_channels)`` replaces the identity or IVA start;
    ``basis``, ``activation`` (and ``partition`` for the partitioned model) replace
    the random NMF start and must all be given together.
    """

    demix: np.ndarray | None = None
    basis: np.ndarray | None = None
    activation: np.ndarray | None = None
    partition: np.ndarray | None = None  # (n_sources, n_bases), partitioned model only


@dataclass
class Result:
    """Outcome of :func:`ilrma_cli.engine.run`, in the caller's scale.

    ``separated`` ``(n_sources, n_freq, n_frames)`` equals ``demix @ obs`` per
    frequency (with taps: ``demix @ x_t - filters @ [x_{t-D}; ...; x_{t-D-L+1}]``, the
    dereverberated outputs, whose projection back still goes through ``demix^{-1}``)
    and ``basis @ activation`` models its power; ``loss`` has one entry
    for the initial point and one per iteration done, or without ``record_loss`` only the
    last iteration's of each stage (ILRMA's, then the full-rank model's);
    ``backend`` names the loop that ran (``compiled`` or ``reference``). With the
    full-rank spatial model, ``fullrank`` is the refined model (at unit mean power) and
    ``loss`` goes on with its negative log-likelihood; the sources are its Wiener images
    (:func:`ilrma_cli.engine.fullrank_refine.fullrank_images`), ``separated`` the rank-1 start's.
    """

    separated: np.ndarray
    demix: np.ndarray  # (n_freq, n_sources, n_channels)
    basis: np.ndarray
    activation: np.ndarray
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0
    backend: str = "compiled"
    partition: np.ndarray | None = None
    fullrank: FullRankModel | None = None
    # Dereverberation filters G (n_freq, n_sources, taps * n_channels) when taps > 0: entry
    # l * n_channels + i weighs mic i delayed by delay + l frames.
    filters: np.ndarray | None = None
