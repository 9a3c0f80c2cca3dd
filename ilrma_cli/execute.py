"""Run independent jobs in a local process pool, one BLAS thread per worker.

Workers treat SIGTERM like Ctrl-C, so a job interrupted anywhere unwinds its
``with`` blocks (removing unfinished outputs) before the worker exits.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import get_context
from typing import TypeVar

Item = TypeVar("Item")
Out = TypeVar("Out")

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _init_worker() -> None:
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _call(task: tuple[Callable[[Item], Out], int, Item]) -> tuple[int, Out]:
    func, index, item = task
    return index, func(item)


def imap_processes(
    func: Callable[[Item], Out], items: Sequence[Item], n_workers: int
) -> Iterator[tuple[int, Out]]:
    """Yield ``(index, func(item))`` as each finishes, from ``n_workers`` spawned processes.

    ``func`` must be a picklable top-level function. Leaving the loop early, or an
    exception (Ctrl-C included), terminates the workers before returning.
    """
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARS}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))  # inherited by the workers
    try:
        pool = get_context("spawn").Pool(min(n_workers, len(items)), initializer=_init_worker)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    finished = False
    try:
        yield from pool.imap_unordered(_call, [(func, i, item) for i, item in enumerate(items)])
        finished = True
    finally:
        if finished:
            pool.close()
        else:
            pool.terminate()
        pool.join()
