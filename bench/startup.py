"""Start-up time of ``ilrma --help`` and ``--version`` against a bare ``python -c pass``.

Whole processes, median of ``--repeats`` interleaved runs (wall time). Prints one
line for ``make bench``. ``--source DIR`` runs ``python -m ilrma_cli`` from another
checkout instead of the installed command (to compare two versions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_seconds(command: list[str], env: dict[str, str], cwd: Path | None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.source is None:
        ilrma = [str(Path(sys.executable).parent / "ilrma")]
    else:
        ilrma = [sys.executable, "-m", "ilrma_cli"]
        env["PYTHONPATH"] = str(args.source.resolve())  # -m also puts the cwd first: run there
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ilrma --help": [*ilrma, "--help"],
        "ilrma --version": [*ilrma, "--version"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall_seconds(command, env, args.source))
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["python -c pass"]
    parts = [f"python -c pass {base:.3f} s"] + [
        f"{name} {median[name]:.3f} s (+{median[name] - base:.3f})"
        for name in commands
        if name != "python -c pass"
    ]
    print(f"start-up, median of {args.repeats} whole processes: " + "; ".join(parts))


if __name__ == "__main__":
    main()
