"""Say so when a run has to compile the numba kernels (the first run after a plain ``pip install``).

numba compiles the kernels of :mod:`ilrma_cli.engine` once and caches them beside
their source; later runs load them in about half a second. The compile takes one to
three minutes (77 s for the first separation of a 10-s file on an idle 2-core machine,
3.5 minutes on a loaded one), and without a word the first run looks hung. numba
announces every compile that its cache could not spare (a ``numba:compile`` event), so
the notice appears exactly when a compile starts, whatever made the cache cold. With the
kernels compiled ahead of time (``make install``, :mod:`ilrma_cli.engine.aot`) there is
nothing to announce.
"""

from __future__ import annotations

import logging
import sys

NOTICE = (
    "ilrma: compiling the numerical kernels once for this installation (one to three minutes, "
    "longer on a busy machine); later runs load them from the cache, or start at once after "
    "`python -m ilrma_cli.engine.aot`"
)

_installed = False


def wants_notice() -> bool:
    """Whether this process's ``ilrma`` logger shows warnings (not ``-q``)."""
    return logging.getLogger("ilrma").getEffectiveLevel() <= logging.WARNING


def announce_compiles(enabled: bool = True) -> None:
    """From now on, print :data:`NOTICE` on stderr when this process starts compiling a kernel.

    Once per process, and only for functions of this package; a no-op when not
    ``enabled``, when called again, or when the kernels were compiled ahead of time
    (:mod:`ilrma_cli.engine.kernels`: nothing to compile). Otherwise it imports numba,
    so call it only where runs happen.
    """
    global _installed
    if _installed or not enabled:
        return
    from ilrma_cli.engine import kernels

    if kernels.AHEAD_OF_TIME is not None:
        return
    from numba.core import event

    class Notice(event.Listener):
        said = False

        def on_start(self, ev: event.Event) -> None:
            module = getattr(ev.data["dispatcher"].py_func, "__module__", "")
            if not self.said and module.startswith("ilrma_cli."):
                self.said = True
                print(NOTICE, file=sys.stderr, flush=True)

        def on_end(self, ev: event.Event) -> None:
            pass

    event.register("numba:compile", Notice())
    _installed = True
