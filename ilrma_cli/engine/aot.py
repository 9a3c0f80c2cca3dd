"""Build the ahead-of-time kernels: ``python -m ilrma_cli.engine.aot`` (``make install`` runs it).

Compiles every :func:`ilrma_cli.engine.kernels.entry` with numba's ``pycc`` into the
extension module :data:`ilrma_cli.engine.kernels.MODULE` beside the kernel sources, for
this machine's CPU (as the JIT does; the extension is built on install, never shipped),
with the JIT's compiler options, the GIL released, and the sources' digest stamped in.
Each entry gets the one specialisation the engine calls it with: the argument types its
``warm_up`` calls compile in a JIT process (which also fills numba's cache for the JIT
fallback). Needs a C compiler; without one the build says why and the JIT is used.
The module appears whole or not at all (built in a temporary directory, then renamed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from unittest.mock import patch

JIT_ENV = {"ILRMA_JIT": "1"}


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel entry for the engine's argument types."""
    from ilrma_cli.engine import compiled, fullrank_compiled, taps_compiled

    compiled.warm_up()
    fullrank_compiled.warm_up()
    taps_compiled.warm_up()


def signatures() -> dict[str, Any]:
    """Each entry's one compiled signature after :func:`warm_up` (a JIT process only)."""
    from ilrma_cli.engine import kernels

    if kernels.AHEAD_OF_TIME is not None:
        raise RuntimeError("signatures come from the JIT: run with ILRMA_JIT=1")
    warm_up()
    found = {name: entry.nopython_signatures for name, entry in kernels.JIT_ENTRIES.items()}
    several = sorted(name for name, sigs in found.items() if len(sigs) != 1)
    if several:
        raise RuntimeError(f"kernels compiled for several argument types: {', '.join(several)}")
    return {name: sigs[0] for name, sigs in found.items()}


def _digest_function(value: int) -> Any:
    def source_digest() -> int:
        return value

    return source_digest


def build(directory: Path | None = None) -> Path:
    """Compile the extension into ``directory`` (default: beside the kernel sources); its path."""
    from numba.core import compiler, cpu
    from numba.pycc import CC
    from numba.pycc import compiler as pycc_compiler

    from ilrma_cli.engine import kernels

    class EntryFlags(compiler.Flags):
        """pycc's flags plus those of :func:`kernels.entry` (pycc has no option for them)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            options = {
                "release_gil": True,
                "fastmath": cpu.FastMathOptions(set(kernels.FASTMATH)),
                **kernels.OPTIONS,
            }
            for name, value in options.items():
                setattr(self, name, value)

    target = directory or Path(kernels.__file__).parent
    exports = signatures()
    with tempfile.TemporaryDirectory(prefix="ilrma-aot-") as tmp:
        cc = CC(kernels.MODULE)
        cc.output_dir = tmp
        cc.target_cpu = "host"
        cc.verbose = False
        for name, signature in exports.items():
            cc.export(name, signature)(kernels.JIT_ENTRIES[name].py_func)
        cc.export("source_digest", "i8()")(_digest_function(kernels.source_digest()))
        # pycc's pending deprecation warning: ours to watch (kernels falls back to the JIT)
        with patch.object(pycc_compiler, "Flags", EntryFlags), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.compile()
        built = Path(tmp) / cc.output_file
        target.mkdir(parents=True, exist_ok=True)
        os.replace(built, target / cc.output_file)
    return target / cc.output_file


def main(argv: list[str] | None = None) -> int:
    """Build the extension if it is missing or stale (or with ``--force``), in a JIT process.

    On a failed build it says why and leaves the JIT to do (exit code 0).
    """
    parser = argparse.ArgumentParser(prog="python -m ilrma_cli.engine.aot", description=__doc__)
    parser.add_argument("--force", action="store_true", help="Build even if it is up to date.")
    force = parser.parse_args(argv).force
    if os.environ.get("ILRMA_JIT") != "1":
        from ilrma_cli.engine import kernels

        if kernels.AHEAD_OF_TIME is not None and not force:
            return 0
        print("==> compiling the numerical kernels ahead of time (about five minutes, once)",
              file=sys.stderr, flush=True)  # fmt: skip
        command = [sys.executable, "-m", "ilrma_cli.engine.aot", *(["--force"] if force else [])]
        return subprocess.run(command, env={**os.environ, **JIT_ENV}).returncode
    start = time.perf_counter()
    try:
        path = build()
    except Exception as error:  # noqa: BLE001 - any build failure leaves the JIT in charge
        warm_up()
        print(f"ilrma: ahead-of-time kernels not built ({type(error).__name__}: {error}); "
              "runs load numba's JIT cache instead (about 0.5 s more per process)",
              file=sys.stderr)  # fmt: skip
        return 0
    print(f"==> kernels compiled ahead of time into {path} ({time.perf_counter() - start:.0f} s)",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
