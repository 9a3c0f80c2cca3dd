"""The ILRMA loop: source-model update, demixing update, power normalisation, loss.

Gaussian ILRMA with an NMF source model (Kitamura, Ono, Sawada, Kameoka and
Saruwatari, "Determined blind source separation unifying independent vector
analysis and nonnegative matrix factorization", IEEE/ACM TASLP 24(9), 2016).
Input ``obs`` is the mixture spectrogram ``(n_channels, n_freq, n_frames)``;
the separated spectrogram is ``(n_sources, n_freq, n_frames)``, before any
scale fix (see :mod:`ilrma_cli.engine.scaling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ilrma_cli.engine import small
from ilrma_cli.engine.demix import FLOOR, LOADING, UPDATES
from ilrma_cli.engine.features import (
    demix_apply,
    freq_blocks,
    unit_power_features,
)
from ilrma_cli.engine.iva import iva_from_features
from ilrma_cli.engine.model import NMFModel
from ilrma_cli.engine.models import MODELS
from ilrma_cli.engine.variants import Consistency, run_variant

# Called after each iteration with (iteration, loss); loss is NaN when it is not
# recorded. Returning True stops the run after that iteration (the demixing
# matrices are those of that iteration; the NMF factors have had one more update).
Callback = Callable[[int, float], bool | None]

EPS = 1e-12
# Real data type of the large per-bin arrays; small matrices stay in complex128.
PRECISIONS: dict[str, type[np.floating]] = {"single": np.float32, "double": np.float64}


@dataclass(frozen=True)
class ILRMAConfig:
    """Settings of one ILRMA run (validated on construction)."""

    n_basis: int = 2
    n_iter: int = 100
    update: str = "ip"
    normalize: bool = True
    record_loss: bool = True
    precision: str = "double"  # single: complex64 output; the variant models iterate in float32
    model: str = "gauss"  # source model, see ilrma_cli.engine.models
    dof: float = 1.0  # degrees of freedom of the t model
    iva_iter: int = 0  # IVA iterations before the ILRMA ones (engine.iva.iva_start)

    def __post_init__(self) -> None:
        if not isinstance(self.n_basis, int | np.integer) or self.n_basis < 1:
            raise ValueError(f"n_basis must be an integer >= 1, got {self.n_basis!r}")
        if not isinstance(self.n_iter, int | np.integer) or self.n_iter < 0:
            raise ValueError(f"n_iter must be an integer >= 0, got {self.n_iter!r}")
        if self.update not in UPDATES:
            raise ValueError(
                f"unknown update {self.update!r}; choose one of {', '.join(sorted(UPDATES))}"
            )
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

    @property
    def real_dtype(self) -> type[np.floating]:
        """Real type of the output spectrogram and of the variant models' per-bin arrays."""
        return PRECISIONS[self.precision]


@dataclass
class Result:
    """Outcome of :func:`run`.

    ``separated`` ``(n_sources, n_freq, n_frames)`` equals ``demix @ obs`` per
    frequency; ``loss`` has one entry for the initial point and one per iteration
    done (empty when not recorded).
    """

    separated: np.ndarray
    demix: np.ndarray  # (n_freq, n_sources, n_channels)
    basis: np.ndarray  # (n_sources, n_freq, n_basis)
    activation: np.ndarray  # (n_sources, n_basis, n_frames)
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0


def negative_log_likelihood(power: np.ndarray, variance: np.ndarray, demix: np.ndarray) -> float:
    """``sum(|Y|^2 / R + log R) - 2 n_frames sum_f log|det W_f|`` (TASLP 2016, eq. 25, up to constants).

    ``power`` and ``variance`` are ``(n_sources, n_freq, n_frames)``, ``demix`` ``(n_freq, n_src, n_ch)``.
    Sums accumulate in float64, one source at a time (one ``(n_freq, n_frames)`` temporary).
    """
    with np.errstate(divide="ignore"):
        logdet = np.log(np.abs(small.det(demix)))
    total = 0.0
    for pow_n, var_n in zip(power, variance, strict=True):
        total += float(np.sum(pow_n / var_n, dtype=np.float64))
        total += sum_log(var_n.ravel())
    return total - 2.0 * power.shape[-1] * float(np.sum(logdet))


def sum_log(values: np.ndarray, group: int = 16) -> float:
    """``sum(log(values))`` of positive ``values`` (1-D) with one logarithm per ``group`` values.

    ``log(a) + log(b) = log(ab)``: products of ``group`` values first (one cheap pass),
    then the logarithms, which cost far more than a product for float64 (numpy's
    float32 logarithm is vectorised, so float32 input takes the direct sum). Falls
    back to the direct sum when a product leaves the float range.
    """
    if values.dtype != np.float64:
        return float(np.sum(np.log(values), dtype=np.float64))
    n_head = values.size - values.size % group
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        products = values[:n_head].reshape(group, -1).prod(axis=0)
        head = float(np.sum(np.log(products)))
    if not np.isfinite(head) or not np.all(products > 0):
        head = float(np.sum(np.log(values[:n_head]), dtype=np.float64))
    return head + float(np.sum(np.log(values[n_head:]), dtype=np.float64))


def validate_observation(obs: np.ndarray) -> np.ndarray:
    """Check the mixture spectrogram's shape and values; returns it complex (no copy if it was)."""
    obs = np.asarray(obs)
    if obs.ndim != 3:
        raise ValueError(f"obs must have shape (n_channels, n_freq, n_frames), got {obs.shape}")
    if obs.shape[0] < 2:
        raise ValueError(f"ILRMA needs at least 2 channels, got {obs.shape[0]}")
    if obs.shape[1] < 1 or obs.shape[2] < 1:
        raise ValueError(f"obs has no time-frequency bins: shape {obs.shape}")
    if not np.iscomplexobj(obs):
        obs = obs.astype(np.complex128)
    if not all(np.isfinite(obs[:, freqs]).all() for freqs in freq_blocks(*obs.shape[1:])):
        raise ValueError("obs contains NaN or infinite values")
    return obs


def _iterate(
    feats: np.ndarray,
    demix: np.ndarray,
    model: NMFModel,
    config: ILRMAConfig,
    callback: Callback | None,
) -> tuple[list[float], int]:
    """Run ``config.n_iter`` iterations in place on ``demix`` and ``model``; ``(losses, n_done)``.

    Each iteration is one :func:`ilrma_cli.engine.kernels.sweep`; a first sweep
    does the NMF update of iteration 1, so the order of the updates is that of the
    paper (NMF, then demixing, then normalisation). The numpy rules of
    :mod:`ilrma_cli.engine.demix` are the reference the compiled ones are tested against.
    """
    from ilrma_cli.engine import kernels  # numba takes ~0.5 s to load: only runs pay it

    n_freq, _, n_frames = feats.shape
    n_src = demix.shape[1]
    rule = kernels.KERNEL_RULES[config.update]
    act_num = np.empty_like(model.activation)
    act_den = np.empty_like(model.activation)

    power_sum = np.zeros(n_src if config.normalize else 0)

    def sweep(code: int, update_basis: bool) -> float:
        act_num.fill(0.0)
        act_den.fill(0.0)
        power_sum.fill(0.0)
        args = (power_sum, code, update_basis, config.record_loss, EPS, LOADING, FLOOR)
        part = kernels.sweep(feats, demix, model.basis, model.activation, act_num, act_den, *args)
        if update_basis:
            model.update_activation(act_num, act_den, EPS)
        return part

    def loss(part: float, gain: np.ndarray) -> float:
        with np.errstate(divide="ignore"):
            logdet = np.log(np.abs(small.det(demix)))
        return (
            part
            - n_freq * n_frames * float(np.sum(np.log(gain)))
            - 2.0 * n_frames * float(np.sum(logdet))
        )

    part = sweep(kernels.NO_COV, config.n_iter > 0)
    losses = [loss(part, np.ones(n_src))] if config.record_loss else []
    n_done = 0
    for it in range(1, config.n_iter + 1):
        more = it < config.n_iter
        part = sweep(rule, more)
        gain = np.ones(n_src)
        if config.normalize:
            gain = power_sum / (n_freq * n_frames)  # mean output power of each source
            gain[gain <= EPS] = 1.0  # a silent output keeps its scale
            demix /= np.sqrt(gain)[None, :, None]
            model.rescale(1.0 / gain)
        n_done = it
        value = float("nan")
        if config.record_loss:
            value = loss(part, gain)
            losses.append(value)
        if callback is not None and callback(it, value):
            break
    return losses, n_done


def run(
    obs: np.ndarray,
    config: ILRMAConfig = ILRMAConfig(),
    seed: int | np.random.Generator = 0,
    callback: Callback | None = None,
    n_sources: int | None = None,
    consistency: Consistency | None = None,
) -> Result:
    """Separate ``obs`` ``(n_channels, n_freq, n_frames)`` into ``n_sources`` (= n_channels).

    Randomness (the NMF initialisation) comes only from ``seed``. The observation
    enters the iterations only through its outer-product features (see
    :mod:`ilrma_cli.engine.features`); ``obs`` itself is read twice, never copied.
    The iterations are compiled sweeps in float64 (:mod:`ilrma_cli.engine.kernels`);
    the separated spectrogram is complex64 with ``precision="single"``. With ``config.iva_iter`` the demixing
    matrices start from that many IVA iterations (:mod:`ilrma_cli.engine.iva`). Models
    other than ``gauss`` and consistent ILRMA (``consistency``) run in
    :func:`ilrma_cli.engine.variants.run_variant`.
    """
    obs = validate_observation(obs)
    n_ch, n_freq, n_frames = obs.shape
    n_sources = n_ch if n_sources is None else n_sources
    if n_sources != n_ch:
        raise ValueError(
            f"n_sources must equal n_channels ({n_ch}) for determined ILRMA, got {n_sources}"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    dtype = config.real_dtype
    # Work on unit mean power so that the floors are meaningful for any input level.
    feats = unit_power_features(obs)  # (n_freq, n_ch**2, n_frames), float64
    start = None
    if config.iva_iter:
        start = iva_from_features(feats, config.iva_iter, config.update, EPS, record_loss=False)[0]
    if config.model != "gauss" or consistency is not None:
        del feats
        return run_variant(obs, config, rng, callback, consistency, EPS, start)
    demix = np.tile(np.eye(n_sources, n_ch, dtype=np.complex128), (n_freq, 1, 1))
    demix = demix if start is None else start
    model = NMFModel.random(n_sources, n_freq, n_frames, config.n_basis, rng, EPS)
    losses, n_done = _iterate(feats, demix, model, config, callback)

    del feats
    complex_dtype = np.result_type(dtype, np.complex64)
    return Result(
        separated=demix_apply(demix, obs, complex_dtype),
        demix=demix,
        basis=model.basis,
        activation=model.activation,
        loss=np.asarray(losses),
        n_iter=n_done,
    )
