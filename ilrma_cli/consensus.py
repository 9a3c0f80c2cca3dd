"""How several restarts are combined: their sources paired with the medoid's, then averaged.

The lowest final negative log-likelihood does not pick the better of several seeds: over
seeds 0-9 of the dev cases its rank correlation with the SDR is about zero, for the rank-1
and the full-rank model alike (QUALITY.md, "The full-rank default"). The *medoid*, the
run whose sources are on average the most similar to the other runs', is never an
outlier; but the *mean* of the runs, each run's sources paired with the medoid's
(:func:`pairing`), beats keeping the medoid on every dev case, in mean and in the worst
window of seeds: independent local optima err differently (QUALITY.md, session 9). So
``--restarts`` outputs that mean (:func:`ilrma_cli.pipeline.mean_images`) and reports the
medoid's run.

Similarity of two runs: the mean over sources of the absolute normalised correlation of
their time signals at the reference mic, for the best pairing of the sources; for long
inputs on the middle :data:`SIGNATURE_SAMPLES` samples only, to bound the memory (the
runs are held until all are done). The time domain matters: correlations of the
spectrograms (inconsistent ones, with a per-frequency demixing) picked worse runs on a
bass-heavy music case (bench/restarts.py).
"""

from __future__ import annotations

import itertools

import numpy as np

from ilrma_cli.engine import Result
from ilrma_cli.engine.images import source_images
from ilrma_cli.stft import Span, StftConfig, istft_span, spans

SIGNATURE_SAMPLES = 2**21  # per source and run: 8 MiB in float32 (about 2 min at 16 kHz)
EXHAUSTIVE_MAX = 6  # sources up to which every pairing is tried (else the assignment solver)


def signature(obs: np.ndarray, result: Result, ref_mic: int, config: StftConfig) -> np.ndarray:
    """The sources of ``result`` at ``ref_mic`` as time signals ``(n_sources, n)`` float32, each
    at unit peak, from the middle span of at most about :data:`SIGNATURE_SAMPLES` samples of
    the frames of ``obs`` ``(n_channels, n_freq, n_frames)`` (STFT ``config``)."""
    span = signature_span(obs.shape[2], config)
    images = source_images(obs, result, ref_mic, slice(span.first, span.end))
    sources = istft_span(images, span, config)
    # Each source at unit peak, which the comparisons ignore: float32 holds any input's scale.
    peak = np.max(np.abs(sources), axis=1, keepdims=True)
    return (sources / np.maximum(peak, np.finfo(np.float64).tiny)).astype(np.float32)


def signature_span(n_frames: int, config: StftConfig) -> Span:
    """The samples and frames of a signature: the middle of the spans of about
    :data:`SIGNATURE_SAMPLES` of a spectrogram of ``n_frames`` frames (:func:`ilrma_cli.stft.spans`)."""
    n_samples = max((n_frames - 1) * config.hop, config.n_fft)
    all_spans = spans(n_samples, n_frames, config, SIGNATURE_SAMPLES)
    return all_spans[len(all_spans) // 2]


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean normalised |correlation| of the sources of ``a`` and ``b`` ``(n_sources, n)``
    under their best pairing (real or complex signals)."""
    return pairing(a, b)[0]


def pairing(a: np.ndarray, b: np.ndarray) -> tuple[float, list[int]]:
    """``(similarity, order)``: source ``i`` of ``a`` pairs with source ``order[i]`` of ``b``
    (the pairing of :func:`similarity`)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    corr = np.abs(a @ b.conj().T)  # (n, n)
    n = len(corr)
    if n <= EXHAUSTIVE_MAX:
        rows = np.arange(n)
        order = max(itertools.permutations(range(n)), key=lambda p: corr[rows, list(p)].mean())
        return float(corr[rows, list(order)].mean()), list(order)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-corr)
    return float(corr[rows, cols].mean()), [int(c) for c in cols]


def medoid(signatures: list[np.ndarray]) -> int:
    """Index of the run with the largest summed similarity to the others (first on ties)."""
    n = len(signatures)
    total = np.zeros(n)
    for i, j in itertools.combinations(range(n), 2):
        value = similarity(signatures[i], signatures[j])
        total[i] += value
        total[j] += value
    return int(np.argmax(total))
