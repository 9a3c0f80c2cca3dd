"""Separation scores: BSS Eval v3 (SDR, SIR, SAR as in ``mir_eval.separation.bss_eval_sources``) and SI-SDR.

Pure numpy/scipy: arrays in, :class:`Scores` out. Two backends give the same numbers:

``fast``
    Our implementation (:mod:`ilrma_cli.bss_eval`): the decompositions of every
    estimate against every reference at once, from correlations shared by all pairs.
``mir_eval``
    ``mir_eval.separation.bss_eval_sources`` itself, its deprecation warning contained.

The permutation is chosen as mir_eval chooses it: the highest mean SIR, the first such in
``itertools.permutations`` order (``np.argmax``), exhaustively up to
:data:`EXHAUSTIVE_MAX_SOURCES` sources, with an assignment solver above. Identical
references (the same file given twice) or identical estimates make exact ties, which
rounding would otherwise break at random (mir_eval's own choice then depends on it): their
SIRs are made equal first, so the tie goes to the first permutation, as in exact
arithmetic. Both backends choose this way.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ilrma_cli.bss_eval import db, pairwise_bss_eval

BACKENDS = ("fast", "mir_eval")
EXHAUSTIVE_MAX_SOURCES = 5

METRICS = ("sdr", "sir", "sar", "si_sdr")
MIXTURE_METRICS = ("sdr_mix", "sir_mix", "sar_mix", "sdri", "siri")
HEADERS = {
    "sdr": "SDR",
    "sir": "SIR",
    "sar": "SAR",
    "si_sdr": "SI-SDR",
    "sdr_mix": "SDR mix",
    "sir_mix": "SIR mix",
    "sar_mix": "SAR mix",
    "sdri": "SDRi",
    "siri": "SIRi",
}


@dataclass(frozen=True)
class Scores:
    """Scores in dB per reference (in reference order), arrays ``(n_sources,)``.

    ``permutation[j]`` is the index of the estimate matched to reference ``j``. The mixture
    fields are set when a mixture was scored: its SDR/SIR/SAR as the estimate of every
    source, and the improvements ``sdri = sdr - sdr_mix``, ``siri = sir - sir_mix``.
    """

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    si_sdr: np.ndarray
    permutation: np.ndarray
    backend: str
    sdr_mix: np.ndarray | None = None
    sir_mix: np.ndarray | None = None
    sar_mix: np.ndarray | None = None
    sdri: np.ndarray | None = None
    siri: np.ndarray | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """Names of the metrics present, in display order."""
        return METRICS + (MIXTURE_METRICS if self.sdr_mix is not None else ())

    def means(self) -> dict[str, float]:
        """Mean over sources of every metric present."""
        return {name: float(np.mean(getattr(self, name))) for name in self.metrics}

    def to_dict(self) -> dict:
        """JSON-ready: plain ints and floats; non-finite values (a zero residual) become None."""
        sources = []
        for ref, est in enumerate(self.permutation):
            entry: dict = {"reference": ref, "estimate": int(est)}
            entry.update({name: _finite(getattr(self, name)[ref]) for name in self.metrics})
            sources.append(entry)
        return {
            "backend": self.backend,
            "permutation": [int(est) for est in self.permutation],
            "sources": sources,
            "mean": {name: _finite(value) for name, value in self.means().items()},
        }

    def format_table(
        self,
        reference_names: Sequence[str] | None = None,
        estimate_names: Sequence[str] | None = None,
    ) -> str:
        """Aligned text table: one row per reference, then the mean; values in dB."""
        n_sources = len(self.permutation)
        ref_names = list(reference_names or [f"ref {j}" for j in range(n_sources)])
        est_names = list(estimate_names or [f"est {i}" for i in range(n_sources)])
        header = ["reference", "estimate"] + [HEADERS[name] for name in self.metrics]
        rows = [
            [ref_names[ref], est_names[est]]
            + [f"{getattr(self, name)[ref]:.2f}" for name in self.metrics]
            for ref, est in enumerate(self.permutation)
        ]
        rows.append(["mean", ""] + [f"{value:.2f}" for value in self.means().values()])
        widths = [max(len(row[col]) for row in [header, *rows]) for col in range(len(header))]

        def line(cells: list[str]) -> str:
            names = [cell.ljust(width) for cell, width in zip(cells[:2], widths[:2], strict=True)]
            values = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:], strict=True)]
            return "  ".join(names + values).rstrip()

        return "\n".join(line(row) for row in [header, *rows])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def score(
    references: np.ndarray,
    estimates: np.ndarray,
    mixture: np.ndarray | None = None,
    backend: str = "fast",
) -> Scores:
    """Score ``estimates`` against ``references``, both ``(n_sources, n_samples)``.

    ``mixture`` ``(n_samples,)``, the reference-microphone channel of the mixture, is also
    scored as the estimate of every source. Raises :class:`ValueError` for mismatched
    shapes, silent (all-zero) or non-finite signals, and an unknown backend. BLAS runs on
    one thread: the Gram solves are small and threads only slow them down.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _score(references, estimates, mixture, backend)


def _score(
    references: np.ndarray, estimates: np.ndarray, mixture: np.ndarray | None, backend: str
) -> Scores:
    references, estimates, mixture = _validated(references, estimates, mixture)
    if backend == "fast":
        stacked = estimates if mixture is None else np.vstack([estimates, mixture])
        sdr, sir, sar = pairwise_bss_eval(references, stacked)  # (n_estimates, n_references)
        n_sources = len(references)
        permutation = _best_permutation(sir[:n_sources], references, estimates)
        matched = (permutation, np.arange(n_sources))
        main = [sdr[matched], sir[matched], sar[matched]]
        mix = (sdr[n_sources], sir[n_sources], sar[n_sources]) if mixture is not None else None
    elif backend == "mir_eval":
        *main, permutation = _mir_eval_scores(references, estimates)
        mix = None if mixture is None else _mir_eval_mixture(references, mixture)
    else:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    si_sdr = _si_sdr(references, estimates[permutation])
    extra = {}
    if mix is not None:
        extra = dict(
            sdr_mix=mix[0],
            sir_mix=mix[1],
            sar_mix=mix[2],
            sdri=main[0] - mix[0],
            siri=main[1] - mix[1],
        )
    sdr, sir, sar = main
    return Scores(sdr, sir, sar, si_sdr, np.asarray(permutation, dtype=int), backend, **extra)


def _validated(
    references: np.ndarray, estimates: np.ndarray, mixture: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    references = np.asarray(references, dtype=np.float64)
    estimates = np.asarray(estimates, dtype=np.float64)
    if references.ndim != 2 or references.shape != estimates.shape:
        raise ValueError(
            "references and estimates must have the same shape (n_sources, n_samples); "
            f"got {references.shape} and {estimates.shape}"
        )
    if references.size == 0:
        raise ValueError(f"no signal to score: shape {references.shape}")
    named = [("reference", references), ("estimate", estimates)]
    if mixture is not None:
        mixture = np.asarray(mixture, dtype=np.float64)
        if mixture.shape != references.shape[1:]:
            raise ValueError(
                f"mixture must have shape ({references.shape[1]},), got {mixture.shape}"
            )
        named.append(("mixture", mixture[np.newaxis]))
    for kind, signals in named:
        for index, signal in enumerate(signals):
            label = kind if kind == "mixture" else f"{kind} {index}"
            if not np.all(np.isfinite(signal)):
                raise ValueError(f"{label} contains NaN or infinite values")
            if not np.any(signal):
                raise ValueError(f"{label} is silent (all zeros): BSS Eval is undefined for it")
    return references, estimates, mixture


def _exact_ties(sir: np.ndarray, references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """``sir`` ``(n_est, n_ref)`` with the columns of identical references, and the rows of
    identical estimates, copied from their first occurrence: equal in exact arithmetic,
    they differ only by rounding, which must not choose the permutation."""
    sir = sir.copy()
    for group in _identical(references):
        sir[:, group] = sir[:, group[:1]]
    for group in _identical(estimates):
        sir[group] = sir[group[:1]]
    return sir


def _identical(signals: np.ndarray) -> list[np.ndarray]:
    """Indices of the groups of identical rows of ``signals`` (groups of two or more)."""
    groups: dict[bytes, list[int]] = {}
    for index, signal in enumerate(signals):
        groups.setdefault(signal.tobytes(), []).append(index)
    return [np.array(group) for group in groups.values() if len(group) > 1]


def _best_permutation(sir: np.ndarray, references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Estimate index for each reference maximising the mean SIR; ``sir`` ``(n_est, n_ref)``.

    Up to :data:`EXHAUSTIVE_MAX_SOURCES` sources every permutation is tried in
    ``itertools.permutations`` order and the first best kept (mir_eval's rule); identical
    references or estimates tie exactly (:func:`_exact_ties`, and sums of sorted terms, so
    that the order of summation cannot split a tie). Above, the assignment solver decides;
    identical references then get their estimates in increasing order, and identical
    estimates their references.
    """
    sir = _exact_ties(sir, references, estimates)
    n_sources = sir.shape[0]
    columns = np.arange(n_sources)
    if n_sources <= EXHAUSTIVE_MAX_SOURCES:
        perms = np.array(list(itertools.permutations(range(n_sources))))
        return perms[np.argmax(np.sort(sir[perms, columns], axis=1).sum(axis=1))]
    from scipy.optimize import linear_sum_assignment  # ~0.4 s to import: only many sources need it

    finite = np.nan_to_num(sir, nan=-1e6, posinf=1e6, neginf=-1e6)
    rows, cols = linear_sum_assignment(finite, maximize=True)
    permutation = np.empty(n_sources, dtype=int)
    permutation[cols] = rows
    for group in _identical(references):
        permutation[group] = np.sort(permutation[group])
    for group in _identical(estimates):
        positions = np.flatnonzero(np.isin(permutation, group))
        permutation[positions] = group
    return permutation


def _si_sdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Scale-invariant SDR (Le Roux et al. 2019) of matched rows, no mean removal; ``(n,)``."""
    ref_energy = np.einsum("sn,sn->s", references, references)
    scale = np.einsum("sn,sn->s", estimates, references) / ref_energy
    noise = estimates - scale[:, np.newaxis] * references
    return db(scale**2 * ref_energy, np.einsum("sn,sn->s", noise, noise))


# --- mir_eval backend -------------------------------------------------------------------


def _bss_eval_sources(references: np.ndarray, estimates: np.ndarray, compute_permutation: bool):
    """``mir_eval.separation.bss_eval_sources`` with its deprecation warning contained."""
    import mir_eval.separation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return mir_eval.separation.bss_eval_sources(references, estimates, compute_permutation)
        except (ValueError, ArithmeticError, AttributeError, np.linalg.LinAlgError) as err:
            # e.g. a singular system on very short signals (mir_eval's fallback breaks on NumPy 2)
            raise ValueError(f"mir_eval could not evaluate these signals ({err})") from None


def _mir_eval_scores(
    references: np.ndarray, estimates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SDR, SIR, SAR per reference and the permutation, from mir_eval's scores of every pair.

    Every pair is scored by calling mir_eval on cyclic shifts of the estimates without its
    own permutation search (the same pair decompositions that search makes); the
    permutation is then chosen by the rule of the fast backend, which is mir_eval's rule
    exact ties included (:func:`_best_permutation`), so both backends choose alike.
    """
    n_sources = len(references)
    pairs = np.empty((3, n_sources, n_sources))  # (metric, estimate, reference)
    refs = np.arange(n_sources)
    for shift in range(n_sources):
        ests = (refs + shift) % n_sources
        pairs[:, ests, refs] = _bss_eval_sources(references, estimates[ests], False)[:3]
    permutation = _best_permutation(pairs[1], references, estimates)
    sdr, sir, sar = pairs[:, permutation, refs]
    return sdr, sir, sar, permutation


def _mir_eval_mixture(
    references: np.ndarray, mixture: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDR, SIR, SAR of the mixture as the estimate of every reference, from mir_eval."""
    stacked = np.repeat(mixture[np.newaxis], len(references), axis=0)
    return tuple(_bss_eval_sources(references, stacked, False)[:3])
