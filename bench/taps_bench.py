"""Seconds per iteration against the number of dereverberation taps (issue 15).

    nice -n 10 python bench/taps_bench.py              # print the table
    nice -n 10 python bench/taps_bench.py --markdown   # and write its section of BENCHMARKS.md

``ilrma_cli.engine.run`` with the default engine settings (``DEFAULT_ILRMA``: the bases and
rule below, delay 2) but no IVA warm start and no loss recording, at the default STFT
(4096/1024 Hann at 16 kHz), on 10 s of the reverberant dev cases: 2 mics / 2 sources
(``arctic_2src_rt600``), 4 mics with 2 and with 4 sources (``arctic_4mic_2src_rt600``).
The time per iteration is ``(t(b) - t(a)) / (b - a)`` for runs of ``a`` and ``b`` iterations
from the same start, so set-up (STFT not included; principal subspace, frames, output) is
left out; the median of ``--repeats`` such differences, process CPU time with one BLAS
thread (other load on a shared machine disturbs it far less than wall time). The ratio
is to taps = 0 of the same row (the compiled backend throughout; taps = 0 is the feature
sweep of ``ilrma_cli.engine.compiled``). The last column is the reference loop (numpy, the
only backend with taps before the compiled one) at taps = 2, for scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import DATA, read, tile  # noqa: E402
from sections import replace_section  # noqa: E402

from ilrma_cli.engine import run  # noqa: E402
from ilrma_cli.settings import DEFAULT_ILRMA  # noqa: E402
from ilrma_cli.stft import StftConfig, stft  # noqa: E402

STFT = StftConfig(4096, 1024, "hann")
SECONDS = 10.0
CASES = {
    "2 mics, 2 src": ("arctic_2src_rt600", 2),
    "4 mics, 2 src": ("arctic_4mic_2src_rt600", 2),
    "4 mics, 4 src": ("arctic_4mic_2src_rt600", 4),
}


def per_iteration(
    obs: np.ndarray,
    n_src: int,
    taps: int,
    variant: str,
    backend: str,
    span: tuple[int, int],
    repeats: int,
) -> float:
    """Median seconds per iteration (see the module docstring) of ``variant``: a rule, with
    ``:R`` the joint update of the filters every R iterations (``tap_refresh``)."""
    rule, _, refresh = variant.partition(":")

    def timed(n_iter: int) -> float:
        config = dataclasses.replace(
            DEFAULT_ILRMA,
            n_iter=n_iter,
            iva_iter=0,
            record_loss=False,
            taps=taps,
            update=rule,
            spatial="rank1",
            tap_refresh=int(refresh or DEFAULT_ILRMA.tap_refresh),
        )
        begin = time.process_time()
        run(obs, config, seed=0, n_sources=n_src, backend=backend)
        return time.process_time() - begin

    a, b = span
    timed(1)  # warm up (compiles or loads the compiled sweeps)
    return statistics.median((timed(b) - timed(a)) / (b - a) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--taps", default="0,1,2,3,4,5")
    parser.add_argument("--rules", default="ip,ip:1,iss", help="ip:R: --tap-refresh R")
    parser.add_argument("--markdown", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()
    taps_list = [int(t) for t in args.taps.split(",")]
    header = " | ".join(f"L={t}" for t in taps_list)
    lines = [
        f"| case | rule | {header} | reference L=2 |",
        "|---" * (len(taps_list) + 3) + "|",
    ]
    print("ms per iteration (ratio to L=0)\n" + "\n".join(lines), flush=True)
    with threadpool_limits(limits=1):
        for name, (case, n_src) in CASES.items():
            obs = stft(tile(read(DATA / "dev" / case / "mix.wav"), SECONDS), STFT)
            # taps = 0 does not depend on the refresh: measured once per rule, so that the
            # rows of one rule share their denominator (its noise shifted rows by 25 %)
            without_taps: dict[str, float] = {}
            for variant in args.rules.split(","):
                rule = variant.partition(":")[0]
                times = []
                for t in taps_list:
                    if t == 0 and rule in without_taps:
                        times.append(without_taps[rule])
                        continue
                    seconds = per_iteration(
                        obs, n_src, t, variant, "compiled", (2, 12), args.repeats
                    )
                    times.append(seconds)
                    if t == 0:
                        without_taps[rule] = seconds
                slow = per_iteration(obs, n_src, 2, variant, "reference", (1, 3), args.repeats)
                cells = " | ".join(f"{1e3 * s:.1f} ({s / times[0]:.1f}x)" for s in times)
                lines.append(f"| {name} | {variant} | {cells} | {1e3 * slow:.0f} |")
                print(lines[-1], flush=True)
    if args.markdown:
        write_section(lines, obs.shape[1:])


def write_section(lines: list[str], shape: tuple[int, ...]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    n_bases = DEFAULT_ILRMA.n_basis
    body = "\n".join(
        [
            "## Time per iteration against the dereverberation taps (ms; ratio to taps = 0)",
            "",
            f"Generated by `bench/taps_bench.py --markdown` (`make bench`). {platform.machine()}, "
            "shared machine: ratios within one row are the figures to trust. "
            f"10 s at 4096/1024 ({shape[1]} frames x {shape[0]} bins), {n_bases} bases, "
            "delay 2, no IVA start, no loss recording; median over runs of the CPU time "
            "difference between 12 and 2 iterations, one BLAS thread. Compiled backend; the last "
            "column is the numpy reference loop at L = 2. `ip` updates the filters jointly with "
            f"the demixing every {DEFAULT_ILRMA.tap_refresh} iterations (`--tap-refresh`, the "
            "default) and runs IP on the outputs between; `ip:R` does it every R iterations, "
            "`ip:1` every iteration (ILRMA-T's IP); `iss` is T-ISS.",
            "",
            *lines,
        ]
    )
    replace_section("taps_bench", body)


if __name__ == "__main__":
    main()
