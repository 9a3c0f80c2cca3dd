"""Throughput of `ilrma separate` on a batch: -j 1, -j 2 and a local Dask cluster.

Builds N mixtures (default 20) of 10 s from the development data (circular shifts
of each case, so that no two are identical), then times the real command line
on the whole batch with each executor and prints a markdown table. Run it on a
quiet machine: `python bench/throughput.py [--n-mixtures 20] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"


def make_batch(folder: Path, n_mixtures: int, seconds: float) -> list[Path]:
    cases = sorted(p for p in DEV.iterdir() if (p / "mix.wav").exists())
    paths = []
    for i in range(n_mixtures):
        data, rate = sf.read(cases[i % len(cases)] / "mix.wav")
        shift = (i // len(cases)) * rate // 3
        clip = np.roll(data, -shift, axis=0)[: int(seconds * rate)]
        path = folder / f"mix{i:02d}.wav"
        sf.write(path, clip, rate, subtype="FLOAT")
        paths.append(path)
    return paths


def time_run(inputs: list[Path], out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "ilrma_cli", "separate", *map(str, inputs), "-o", str(out),
               "-f", "--no-progress", "-q", *extra]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-mixtures", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    executors = {
        "-j 1": ["-j", "1"],
        "-j 2": ["-j", "2"],
        "--scheduler local:2": ["--scheduler", "local:2"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = make_batch(folder, args.n_mixtures, args.seconds)
        times = {
            name: statistics.median(
                time_run(inputs, folder / "out", extra) for _ in range(args.repeats)
            )
            for name, extra in executors.items()
        }
    base = times["-j 1"]
    print(f"{args.n_mixtures} mixtures of {args.seconds:g} s, 2 channels, default settings; "
          f"median of {args.repeats} runs (whole command, start-up included)\n")  # fmt: skip
    print("| executor | wall time (s) | mixtures / min | speed-up vs -j 1 |")
    print("|---|---|---|---|")
    for name, seconds in times.items():
        rate = args.n_mixtures / seconds * 60
        print(f"| `{name}` | {seconds:.1f} | {rate:.1f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
