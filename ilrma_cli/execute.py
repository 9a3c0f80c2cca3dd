"""Run independent jobs: in this process, in a local process pool, or on a Dask cluster.

Every job is a picklable top-level function applied to one item; results come
back as ``(index, result)`` in completion order. Pool workers use one BLAS
thread each and treat SIGTERM like Ctrl-C, so a job interrupted anywhere unwinds
its ``with`` blocks (removing unfinished outputs) before the worker exits.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import get_context
from typing import TypeVar

from ilrma_cli.errors import IlrmaError, Interrupted

Item = TypeVar("Item")
Out = TypeVar("Out")

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_scheduler(value: str) -> tuple[str, int | str]:
    """``local:N`` -> ("local", N); anything else is a scheduler address (``ValueError`` if empty)."""
    if value.startswith("local:"):
        count = value.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"{value!r}: local:N needs a number of workers N >= 1")
        return "local", int(count)
    if not value.strip():
        raise ValueError("an empty scheduler address")
    return "address", value


def imap_runs(
    func: Callable[[Item], Out], items: Sequence[Item], jobs: int = 1, scheduler: str | None = None
) -> Iterator[tuple[int, Out]]:
    """``(index, func(item))`` for every item: on ``scheduler`` if given, else ``jobs`` processes."""
    if scheduler is not None:
        return imap_dask(func, items, scheduler)
    if jobs > 1 and len(items) > 1:
        return imap_processes(func, items, jobs)
    return ((index, func(item)) for index, item in enumerate(items))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``with`` block on the way cleans up."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def interruptible(what: str) -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated`, and Ctrl-C or SIGTERM into :class:`Interrupted`.

    ``what`` ends the one-line message: what became of the work (exit 130 or 143).
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except Terminated:
        raise Interrupted("SIGTERM", 143, what) from None
    except KeyboardInterrupt:
        raise Interrupted("SIGINT", 130, what) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


_in_task = False


def _stop_worker(signum: int, frame: object) -> None:
    """In a task: unwind it (its outputs are removed); idle: leave at once, quietly."""
    if _in_task:
        raise KeyboardInterrupt
    os._exit(1)


def _init_worker() -> None:
    signal.signal(signal.SIGTERM, _stop_worker)
    signal.signal(signal.SIGINT, _stop_worker)


def _call(task: tuple[Callable[[Item], Out], int, Item]) -> tuple[int, Out]:
    global _in_task
    func, index, item = task
    _in_task = True
    try:
        return index, func(item)
    except KeyboardInterrupt:
        os._exit(1)  # cleaned up already; no traceback from a stopped worker
    finally:
        _in_task = False


def imap_processes(
    func: Callable[[Item], Out], items: Sequence[Item], n_workers: int
) -> Iterator[tuple[int, Out]]:
    """Yield ``(index, func(item))`` as each finishes, from ``n_workers`` spawned processes.

    Leaving the loop early, or an exception (Ctrl-C included), terminates the workers.
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


def imap_dask(
    func: Callable[[Item], Out], items: Sequence[Item], scheduler: str
) -> Iterator[tuple[int, Out]]:
    """Yield ``(index, func(item))`` as each finishes on a Dask cluster.

    ``scheduler`` is ``local:N`` (a :class:`LocalCluster` of N single-threaded worker
    processes, closed afterwards) or the address of a running scheduler. Dask re-runs
    the tasks of a lost worker; leaving the loop early cancels what has not started.
    """
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise IlrmaError(
            "--scheduler needs dask.distributed, which is not installed: "
            "pip install 'ilrma-cli[dask]'"
        ) from None
    kind, where = parse_scheduler(scheduler)
    cluster = None
    try:
        if kind == "local":
            cluster = LocalCluster(
                n_workers=int(where), threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR,
            )  # fmt: skip
            client = Client(cluster)
        else:
            client = Client(str(where), timeout="15s")
    except (OSError, TimeoutError) as err:
        if cluster is not None:
            cluster.close()
        raise IlrmaError(f"{scheduler}: cannot reach the Dask scheduler ({err})") from None
    futures = []
    try:
        futures = [client.submit(func, item, pure=False) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()
    finally:
        client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()
