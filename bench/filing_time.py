"""Issue 14's time target, side by side: ``ilrma separate`` now against the code of the day
the issue was filed.

    .venv/bin/python bench/filing_time.py --repeats 5
    .venv/bin/python bench/filing_time.py --now "--restarts 4 --fullrank-iter 60" --now ""

The issue asks that the defaults take at most twice "today's separation time" on a 10-s
two-channel file. "Today" is commit :data:`FILED` (the last before the full-rank model),
checked out into a temporary git worktree and run from this checkout's environment (its
numba kernels are JIT-compiled and cached by a first, untimed run). Each ``--now`` is a set
of extra options for this checkout's ``ilrma separate`` ("" is the defaults). Median wall
time of ``--repeats`` interleaved whole processes on ``sample_data/mix.wav``, and each
command's ratio to the filing-time one. Timing: keep the machine otherwise idle.
``PYTHONDONTWRITEBYTECODE`` is cleared for the commands, as on a user's machine: set, every
process (each worker too) compiles the modules it imports again, about 0.1 s.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILED = "b346d1a"  # main just before the full-rank model (2d3ecc5): the "today"
SAMPLE = ROOT / "sample_data" / "mix.wav"


def wall_seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--now", action="append", help='extra options, "" for the defaults')
    args = parser.parse_args()
    variants = args.now or [""]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "filed"
        subprocess.run(["git", "worktree", "add", "-f", "--detach", str(old), FILED],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        try:
            out = Path(tmp) / "out"
            base = [sys.executable, "-m", "ilrma_cli", "separate", str(SAMPLE), "-o", str(out),
                    "-q", "-f"]  # fmt: skip
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            commands = {f"filed ({FILED})": (base, old, {**env, "PYTHONPATH": str(old)})}
            for extra in variants:
                name = f"now {extra}".strip()
                commands[name] = (base + shlex.split(extra), ROOT, env)
            for command, cwd, env in commands.values():  # warm caches, untimed
                wall_seconds(command, cwd, env)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeats):
                for name, (command, cwd, env) in commands.items():
                    times[name].append(wall_seconds(command, cwd, env))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip
    filed = statistics.median(next(iter(times.values())))
    print(f"| command | median s ({args.repeats} runs) | / filed |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.2f} | {median / filed:.2f}x |")


if __name__ == "__main__":
    main()
