"""Frequency chunks for the compiled sweeps, run on a pool of threads.

The sweeps of :mod:`ilrma_cli.engine.compiled` release the GIL, so the threads
of one process run them on different frequency chunks at once. The chunks
depend only on the number of frequencies, never on the thread count, and each
chunk sums into its own buffers; the callers then add the chunks' buffers in
chunk order. So every thread count gives the same bits.

The thread count is per process (:func:`set_threads`); it does not change results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Fixed chunk count: enough for 16 cores; each chunk keeps its own NMF update sums.
N_CHUNKS = 16

_threads = 1
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def chunk_bounds(n_freq: int) -> list[tuple[int, int]]:
    """The ``min(N_CHUNKS, n_freq)`` contiguous ``[lo, hi)`` frequency ranges, near-equal sizes."""
    n_chunks = max(1, min(N_CHUNKS, n_freq))
    edges = np.linspace(0, n_freq, n_chunks + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def set_threads(n_threads: int) -> None:
    """Run the sweeps of this process on ``n_threads`` threads (1: in the calling thread)."""
    global _threads, _pool
    if n_threads < 1:
        raise ValueError(f"the thread count must be at least 1, not {n_threads}")
    with _lock:
        if n_threads != _threads and _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = n_threads


def get_threads() -> int:
    """The thread count set by :func:`set_threads` (1 by default)."""
    return _threads


def run_chunks(work: Callable[[int, int, int], float], bounds: list[tuple[int, int]]) -> float:
    """``work(chunk, lo, hi)`` for every chunk; returns the sum of the results in chunk order.

    With several threads each takes one contiguous share of the chunks (a static
    schedule: one task per thread and sweep, not one per chunk, so the hand-over costs
    little next to a short sweep).
    """
    global _pool
    jobs = [(chunk, lo, hi) for chunk, (lo, hi) in enumerate(bounds)]
    n_tasks = min(_threads, len(jobs))
    if n_tasks == 1:
        results = [work(*job) for job in jobs]
    else:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(_threads, thread_name_prefix="ilrma-sweep")
            pool = _pool
        edges = [len(jobs) * k // n_tasks for k in range(n_tasks + 1)]
        shares = [jobs[lo:hi] for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        parts = pool.map(lambda share: [work(*job) for job in share], shares)
        results = [value for part in parts for value in part]
    total = 0.0
    for value in results:
        total += value
    return total
