"""Run independent jobs: in this process, in a local process pool, or on a Dask cluster.

Every job is a picklable top-level function applied to one item; results come
back as ``(index, result)`` in completion order. Pool workers use one BLAS
thread each and treat SIGTERM like Ctrl-C, so a job interrupted anywhere unwinds
its ``with`` blocks (removing unfinished outputs) before the worker exits.

A worker never outlives the ``ilrma`` process that started it, however that
process ended (``kill -9`` and the out-of-memory killer included): on Linux the
kernel signals the worker the moment its parent dies (``PR_SET_PDEATHSIG``), and
everywhere a watchdog thread notices within :data:`WATCH_SECONDS`. The worker then
unwinds like on SIGTERM, so the mixture it was working on writes nothing. A
worker that dies under a running pool breaks the pool at once
(:class:`~concurrent.futures.process.BrokenProcessPool`), so the parent never
waits for a result that cannot come.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, TypeVar

from ilrma_cli.errors import IlrmaError, Interrupted, ProcessingError
from ilrma_cli.firstrun import announce_compiles, wants_notice

Item = TypeVar("Item")
Out = TypeVar("Out")

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Signals that end a run like Ctrl-C, with their exit codes (128 + number).
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
# Sent by the kernel to a worker when its parent dies (Linux); not used for anything else.
PARENT_DEATH_SIGNAL = signal.SIGUSR1
WATCH_SECONDS = 0.2  # how often the portable watchdog looks at the parent
PROGRESS_SECONDS = 0.1  # how often imap_processes passes its workers' progress on
_PR_SET_PDEATHSIG = 1


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
    """SIGTERM or SIGHUP, raised like Ctrl-C so that every ``with`` block on the way cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def interruptible(what: str) -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated`, and any of them or Ctrl-C into :class:`Interrupted`.

    ``what`` ends the one-line message: what became of the work (exit 130, 143 or 129).
    """
    caught = [s for s in STOP_SIGNALS if s != signal.SIGINT]
    raised = False

    def raise_terminated(signum: int, frame: object) -> None:
        nonlocal raised
        if not raised:  # once: a second signal must not cut the clean-up short
            raised = True
            raise Terminated(signum)

    previous = {s: signal.signal(s, raise_terminated) for s in caught}
    try:
        yield
    except Terminated as stop:
        name = signal.Signals(stop.signum).name
        raise Interrupted(name, STOP_SIGNALS[signal.Signals(stop.signum)], what) from None
    except KeyboardInterrupt:
        raise Interrupted("SIGINT", 130, what) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_in_task = False
_unwinding = False
_parent_pid = 0
_progress: Any = None  # in a worker of imap_processes(..., progress=...): the parent's queue


def _stop_worker(signum: int, frame: object) -> None:
    """In a task: unwind it (its outputs are removed); idle: leave at once, quietly.

    Signals that come while the task unwinds are ignored: a second KeyboardInterrupt
    would cut its clean-up short (two come when the parent dies: see _on_parent_signal).
    """
    global _unwinding
    if not _in_task:
        os._exit(1)
    if not _unwinding:
        _unwinding = True
        raise KeyboardInterrupt


def _on_parent_signal(signum: int, frame: object) -> None:
    """The parent-death signal also comes when the parent's thread that started us ends: check.

    A dying parent's threads end one by one, and each end sends the signal again.
    """
    if os.getppid() != _parent_pid:
        _stop_worker(signum, frame)


def _watch_parent() -> None:
    """Poll the parent; once it is gone, stop the main thread as SIGTERM would, until it has.

    The backstop of the kernel's signal, and the only watch where there is none: a
    signal that lands while the main thread runs a handler between two tries of a
    blocking call (a lock, a pipe) is lost, so the SIGTERM is sent again and again.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, [*STOP_SIGNALS, PARENT_DEATH_SIGNAL])
    while os.getppid() == _parent_pid:
        time.sleep(WATCH_SECONDS)
    main = threading.main_thread().ident
    assert main is not None
    while True:  # a daemon thread: it ends with the process
        signal.pthread_kill(main, signal.SIGTERM)
        time.sleep(WATCH_SECONDS)


def _ask_kernel_for_parent_death_signal(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, signum)``: the kernel sends ``signum`` when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


def _init_worker(
    parent_pid: int,
    notice: bool,
    threads: int = 1,
    progress: Any = None,
    preload: tuple[str, ...] = (),
) -> None:
    """Worker start-up: stop on SIGTERM, SIGINT or SIGHUP, and when ``parent_pid`` dies.

    With ``notice``, a first compile of the kernels is announced on stderr. The
    sweeps run on ``threads`` threads. ``progress`` is the queue :func:`report_progress`
    writes to. The modules named in ``preload`` are imported now.
    """
    global _parent_pid, _progress
    _parent_pid = parent_pid
    _progress = progress
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_worker)
    signal.signal(PARENT_DEATH_SIGNAL, _on_parent_signal)  # before asking for it
    _ask_kernel_for_parent_death_signal(PARENT_DEATH_SIGNAL)  # at once, where there is one
    threading.Thread(target=_watch_parent, name="ilrma-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before we could watch it
        os._exit(1)
    announce_compiles(notice)
    _set_threads(threads)
    for module in preload:
        importlib.import_module(module)


def _set_threads(threads: int) -> None:
    from ilrma_cli.engine.threads import set_threads  # the engine only where runs happen

    set_threads(threads)


def _with_threads(func: Callable[[Item], Out], threads: int, item: Item) -> Out:
    """``func(item)`` with the sweeps on ``threads`` threads (a Dask task)."""
    _set_threads(threads)
    return func(item)


def _current_threads() -> int:
    from ilrma_cli.engine.threads import get_threads

    return get_threads()


def _call(task: tuple[Callable[[Item], Out], Item]) -> Out:
    global _in_task
    func, item = task
    _in_task = True
    try:
        return func(item)
    except KeyboardInterrupt:
        os._exit(1)  # cleaned up already; no traceback from a stopped worker
    finally:
        _in_task = False


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Set the BLAS thread variables to 1 while workers are started (they inherit them)."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARS}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.cache
def can_start_processes() -> bool:
    """Whether this system gives the locks a process pool needs (some sandboxes have no
    POSIX semaphores: ``OSError`` or ``ImportError`` from ``sem_open``)."""
    try:
        get_context("spawn").Lock()
    except (OSError, ImportError):
        return False
    return True


def report_progress(iteration: int, loss: float) -> None:
    """An iteration callback for work in :func:`imap_processes`: hands ``(iteration, loss)``
    to the parent's ``progress`` (nothing where the parent asked for none)."""
    if _progress is not None:
        _progress.put((iteration, loss))


def imap_processes(
    func: Callable[[Item], Out],
    items: Sequence[Item],
    n_workers: int,
    progress: Callable[[int, float], object] | None = None,
) -> Iterator[tuple[int, Out]]:
    """Yield ``(index, func(item))`` as each finishes, from ``n_workers`` spawned processes.

    Each worker runs the sweeps on as many threads as this process does. With
    ``progress``, what the items' work passes to :func:`report_progress` reaches it here,
    as it happens, and all of an item's before its result is yielded (the queue is
    written synchronously, ahead of the result).

    Leaving the loop early, or an exception (Ctrl-C included), terminates the workers;
    a worker killed from outside raises :class:`~ilrma_cli.errors.ProcessingError`.
    The pool of :func:`start_processes` is used where it has the size, progress queue and
    thread count this call needs.
    """
    size = min(n_workers, len(items))
    pool, queue = _take_started(size, progress is not None) or _new_pool(size, progress is not None)

    def drain() -> None:
        if queue is not None and progress is not None:
            while not queue.empty():
                progress(*queue.get())

    with _one_blas_thread():
        pending: dict[Future[Out], int] = {
            pool.submit(_call, (func, item)): index for index, item in enumerate(items)
        }
    finished = False
    try:
        while pending:
            done, _ = wait(
                pending, None if queue is None else PROGRESS_SECONDS, return_when=FIRST_COMPLETED
            )
            drain()
            for future in done:
                index = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise ProcessingError(
                        "a worker process ended abruptly (killed by a signal, or by the "
                        "system for lack of memory); its work was not saved"
                    ) from None
                yield index, result
        finished = True
    finally:
        if not finished:
            for process in list(pool._processes.values()):
                process.terminate()  # SIGTERM: the task in progress removes its outputs
        pool.shutdown(wait=True, cancel_futures=True)
        if queue is not None:
            queue.close()


Pool = tuple[ProcessPoolExecutor, Any]  # the executor and its progress queue (or None)
_started: tuple[Pool, int, bool, int] | None = None  # with its size, queue wanted, threads


def _new_pool(size: int, with_queue: bool, preload: tuple[str, ...] = ()) -> Pool:
    """A pool of ``size`` spawned workers (:func:`_init_worker`); they start at its first
    task, in the environment of then (:func:`_one_blas_thread`)."""
    context = get_context("spawn")
    queue = context.SimpleQueue() if with_queue else None
    initargs = (os.getpid(), wants_notice(), _current_threads(), queue, preload)
    return ProcessPoolExecutor(size, context, _init_worker, initargs), queue


def start_processes(n_workers: int, with_progress: bool, preload: Sequence[str] = ()) -> None:
    """Start the workers of the next :func:`imap_processes` call now, importing ``preload``.

    A spawned worker takes about a quarter of a second to start (an interpreter and the
    engine's imports): started first, that overlaps what this process does before the
    work is handed out (reading a file, its STFT). ``n_workers`` and ``with_progress``
    must be what that call will ask for, in the thread count of now; a pool no call takes
    is ended by :func:`stop_started_processes`.
    """
    global _started
    stop_started_processes()
    pool = _new_pool(n_workers, with_progress, tuple(preload))
    with _one_blas_thread():
        for _ in range(n_workers):  # each task finding no idle worker starts one
            pool[0].submit(os.getpid)
    _started = (pool, n_workers, with_progress, _current_threads())


def _take_started(size: int, with_queue: bool) -> Pool | None:
    """The pool of :func:`start_processes` if it fits (it is then no longer held), else None
    (and that pool, if any, is ended)."""
    global _started
    if _started is not None and _started[1:] == (size, with_queue, _current_threads()):
        pool = _started[0]
        _started = None
        return pool
    stop_started_processes()
    return None


def stop_started_processes() -> None:
    """End the pool of :func:`start_processes` if no :func:`imap_processes` call took it."""
    global _started
    if _started is not None:
        (pool, queue), _started = _started[0], None
        pool.shutdown(wait=True, cancel_futures=True)
        if queue is not None:
            queue.close()


def imap_dask(
    func: Callable[[Item], Out], items: Sequence[Item], scheduler: str
) -> Iterator[tuple[int, Out]]:
    """Yield ``(index, func(item))`` as each finishes on a Dask cluster.

    ``scheduler`` is ``local:N`` (a :class:`LocalCluster` of N single-threaded worker
    processes, closed afterwards) or the address of a running scheduler. Each task
    runs the sweeps on as many threads as this process does. Dask re-runs
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
        threads = _current_threads()
        futures = [client.submit(_with_threads, func, threads, item, pure=False) for item in items]
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            yield index[future.key], future.result()
    finally:
        client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()
