"""How the kernels of the engine are compiled: ahead of time when built, else numba's JIT.

The kernel modules mark their helpers with :func:`inline` and the functions the engine
calls with :func:`entry`. Two ways to run them:

- **Ahead of time.** :mod:`ilrma_cli.engine.aot` (run by ``make install``) compiles the
  entries of each kernel module (:data:`KERNEL_MODULES`) with numba's ``pycc`` into an
  extension module beside this file (:func:`extension_name`), with the JIT's options.
  A process that finds them all never imports numba: the kernels are ready at once,
  where loading them from numba's cache costs about half a second of numba start-up
  per process (issue 16's start-up budget).
- **Just in time** (numba, cached beside the sources): when an extension is absent,
  does not import (another numpy ABI), was built from other kernel sources (its
  :func:`source_digest` differs), or ``ILRMA_JIT=1`` is set.

Both give the same bits (``tests/test_aot.py``). The extensions hold one specialisation
per entry, the argument types of the engine's calls (every array C-contiguous, float64
or complex128); a test checks that the engine makes no other calls.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

# Reassociation lets the compiler vectorise the sums over frames; no assumptions about
# NaN or infinity, so the finiteness checks stay.
FASTMATH = frozenset({"reassoc", "contract", "arcp", "nsz"})
OPTIONS: dict[str, Any] = {"error_model": "numpy", "boundscheck": False}
# The kernel modules and those whose constants they freeze (LOADING, EPS).
SOURCES = (
    "kernels.py",
    "compiled.py",
    "fullrank_compiled.py",
    "taps_compiled.py",
    "observation.py",
    "fullrank.py",
)
KERNEL_MODULES = ("compiled", "fullrank_compiled", "taps_compiled")


def extension_name(kernel_module: str) -> str:
    """The extension built from a kernel module (``compiled`` -> ``_kernels_compiled``)."""
    return f"_kernels_{kernel_module}"


def source_digest() -> int:
    """A 63-bit digest of the kernel sources (:data:`SOURCES`), stamped into the extensions."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def _load_ahead_of_time() -> dict[str, ModuleType] | None:
    """Every kernel module's extension, or None unless all import and match the sources."""
    if os.environ.get("ILRMA_JIT", "") not in ("", "0"):
        return None
    digest, found = source_digest(), {}
    for kernel_module in KERNEL_MODULES:
        try:
            extension = importlib.import_module(f"{__package__}.{extension_name(kernel_module)}")
            current = extension.source_digest() == digest
        except (ImportError, AttributeError):  # absent, another numpy ABI, or not ours
            return None
        if not current:
            return None
        found[kernel_module] = extension
    _preload_scipy_blas()
    return found


def _preload_scipy_blas() -> None:
    """Load scipy's ``cython_blas`` and ``cython_lapack`` alone, as ``scipy.linalg``'s modules.

    The kernels' matrix products call BLAS through numba, which takes its functions from
    ``scipy.linalg.cython_blas`` on the first call; importing that runs all of
    ``scipy.linalg`` first (0.15-0.2 s in every process, the workers' included), the
    extension alone about 0.03 s. A later ``import scipy.linalg`` keeps these modules
    (``from scipy.linalg import cython_blas`` finds them; only the attribute
    ``scipy.linalg.cython_blas`` is not set). Anything unexpected leaves the usual import.
    """
    import importlib.machinery
    import importlib.util
    import sys

    try:
        scipy_spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return
    if scipy_spec is None or not scipy_spec.submodule_search_locations:
        return
    folder = Path(next(iter(scipy_spec.submodule_search_locations))) / "linalg"
    for name in ("cython_blas", "cython_lapack"):
        full_name = f"scipy.linalg.{name}"
        if full_name in sys.modules:
            continue
        paths = [folder / f"{name}{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        path = next((p for p in paths if p.is_file()), None)
        spec = None if path is None else importlib.util.spec_from_file_location(full_name, path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[full_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:  # noqa: BLE001 - any failure: the usual import instead
            del sys.modules[full_name]
            return


AHEAD_OF_TIME = _load_ahead_of_time()
JIT_ENTRIES: dict[str, Any] = {}
"""In a JIT process, every :func:`entry`'s dispatcher by ``module.name`` (``compiled.sweep``)."""


def _module_of(func: Callable[..., Any]) -> str:
    return func.__module__.rsplit(".", 1)[-1]


def inline(func: Callable[..., Any]) -> Any:
    """A helper inlined into the entries that call it (as itself when they are ahead of time).

    Inlining keeps every entry one unit for the optimiser; with separately compiled
    helpers, the code a process compiled and the code it later loaded from numba's cache
    rounded differently, so the first run after installing gave other last bits.
    """
    if AHEAD_OF_TIME is not None:
        return func
    import numba

    return numba.njit(inline="always", cache=True, fastmath=set(FASTMATH), **OPTIONS)(func)


def entry(func: Callable[..., Any]) -> Any:
    """A kernel the engine calls: the extension's function, or a cached JIT one that
    releases the GIL (the threads of :mod:`ilrma_cli.engine.threads` run it at once)."""
    if AHEAD_OF_TIME is not None:
        return getattr(AHEAD_OF_TIME[_module_of(func)], func.__name__)
    import numba

    dispatcher = numba.njit(cache=True, nogil=True, fastmath=set(FASTMATH), **OPTIONS)(func)
    JIT_ENTRIES[f"{_module_of(func)}.{func.__name__}"] = dispatcher
    return dispatcher
