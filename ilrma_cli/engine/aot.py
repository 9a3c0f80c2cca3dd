"""Build the ahead-of-time kernels: ``python -m ilrma_cli.engine.aot`` (``make install`` runs it).

Compiles the :func:`ilrma_cli.engine.kernels.entry` functions of each kernel module with
numba's ``pycc`` into its extension module beside the sources, for this machine's CPU
(as the JIT does; the extensions are built on install, never shipped), with the JIT's
compiler options, the GIL released, and the sources' digest stamped in. Each entry gets
the one specialisation the engine calls it with: the argument types its module's
``warm_up`` compiles in a JIT process (which also fills numba's cache for the JIT
fallback). One process per kernel module, all at once. Needs a C compiler; without one
the build says why and the JIT is used. An extension appears whole or not at all (built
in a temporary directory, then renamed).
"""

from __future__ import annotations

import argparse
import importlib
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
NOT_BUILT = 3  # exit code of a module's build that failed and left the JIT warmed instead


def warm_up(kernel_module: str) -> None:
    """Compile (or load from numba's cache) a kernel module's entries for the engine's types."""
    importlib.import_module(f"ilrma_cli.engine.{kernel_module}").warm_up()


def signatures(kernel_module: str) -> dict[str, Any]:
    """Each entry of ``kernel_module`` with its one compiled signature after :func:`warm_up`
    (a JIT process only)."""
    from ilrma_cli.engine import kernels

    if kernels.AHEAD_OF_TIME is not None:
        raise RuntimeError("signatures come from the JIT: run with ILRMA_JIT=1")
    warm_up(kernel_module)
    found = {
        name.partition(".")[2]: entry.nopython_signatures
        for name, entry in kernels.JIT_ENTRIES.items()
        if name.partition(".")[0] == kernel_module
    }
    several = sorted(name for name, sigs in found.items() if len(sigs) != 1)
    if several:
        raise RuntimeError(f"kernels compiled for several argument types: {', '.join(several)}")
    return {name: sigs[0] for name, sigs in found.items()}


def _digest_function(value: int) -> Any:
    def source_digest() -> int:
        return value

    return source_digest


def build(kernel_module: str, directory: Path | None = None) -> Path:
    """Compile ``kernel_module``'s extension into ``directory`` (default: beside the sources)."""
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
    exports = signatures(kernel_module)
    # numba's compiler probes leave their folders (temp.c, temp.o) in the temporary folder:
    # let that be one of ours, removed with it
    with (
        tempfile.TemporaryDirectory(prefix="ilrma-aot-") as tmp,
        patch.object(tempfile, "tempdir", tmp),
    ):
        cc = CC(kernels.extension_name(kernel_module))
        cc.output_dir = tmp
        cc.target_cpu = "host"
        cc.verbose = False
        for name, signature in exports.items():
            cc.export(name, signature)(kernels.JIT_ENTRIES[f"{kernel_module}.{name}"].py_func)
        cc.export("source_digest", "i8()")(_digest_function(kernels.source_digest()))
        # pycc's pending deprecation warning: ours to watch (kernels falls back to the JIT)
        with patch.object(pycc_compiler, "Flags", EntryFlags), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.compile()
        target.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / cc.output_file, target / cc.output_file)
    return target / cc.output_file


def _build_one(kernel_module: str) -> int:
    """In a JIT process: build one extension; on failure warm the JIT, say why, NOT_BUILT."""
    try:
        build(kernel_module)
    except Exception as error:  # noqa: BLE001 - any build failure leaves the JIT in charge
        warm_up(kernel_module)
        print(f"ilrma: ahead-of-time kernels of {kernel_module} not built ({type(error).__name__}: "
              f"{error}); runs load numba's JIT cache instead (about 0.5 s more per process)",
              file=sys.stderr)  # fmt: skip
        return NOT_BUILT
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build the extensions if any is missing or stale (or with ``--force``), one JIT
    process per kernel module. A failed build says why and leaves the JIT to do (exit 0)."""
    from ilrma_cli.engine import kernels

    parser = argparse.ArgumentParser(prog="python -m ilrma_cli.engine.aot", description=__doc__)
    parser.add_argument("--force", action="store_true", help="Build even if up to date.")
    parser.add_argument("--module", choices=kernels.KERNEL_MODULES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.module is not None:
        return _build_one(args.module)
    if kernels.AHEAD_OF_TIME is not None and not args.force:
        return 0
    print("==> compiling the numerical kernels ahead of time (two to five minutes, once)",
          file=sys.stderr, flush=True)  # fmt: skip
    start = time.perf_counter()
    builds = [
        subprocess.Popen(
            [sys.executable, "-m", "ilrma_cli.engine.aot", "--module", module],
            env={**os.environ, **JIT_ENV},
        )  # fmt: skip
        for module in kernels.KERNEL_MODULES
    ]
    codes = [process.wait() for process in builds]
    failed = [code for code in codes if code not in (0, NOT_BUILT)]
    if failed:
        return failed[0]
    if NOT_BUILT not in codes:
        folder = Path(kernels.__file__).parent
        print(f"==> kernels compiled ahead of time into {folder} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
