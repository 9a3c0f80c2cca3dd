"""Prototype: keep the restart whose sources agree most with the other restarts (the medoid).

The lowest final loss does not pick the better of several seeds (QUALITY.md), so restarts
cannot remove unlucky seeds that way. A blind alternative: run N seeds, and keep the run
whose separated sources are, on average, the most similar to those of the other N - 1
runs (similarity of two runs: the mean over sources of the absolute normalised correlation
of the time signals at the reference mic, best permutation). An outlying run, good or
bad, is never kept; the result is the "typical" separation.

    python bench/consensus.py --cases dev --setting n_fft=11000+hop=2750 --seeds 0-9 --window 3,5

Prints per case the SDRi of single seeds (mean, worst - mean) and of the medoid of every
window of ``--window`` consecutive seeds (mean, worst - mean of the windows).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import _load, case_specs, seed_list  # noqa: E402
from quality import parse  # noqa: E402

from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |corr| of the sources of ``a`` and ``b`` ``(n_src, n_samples)``, best permutation."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    corr = np.abs(a @ b.T)
    n = len(a)
    return max(
        float(np.mean(corr[np.arange(n), list(p)])) for p in itertools.permutations(range(n))
    )


def one_case(spec: object, setting: str, seeds: list[int]) -> tuple[str, list[float], list]:
    """SDRi and estimates of every seed of one case."""
    os.nice(10)
    case, sdr_mix, _ = _load(spec)
    settings = parse(setting).settings
    n_src = case.images.shape[0]
    n_sources = n_src if n_src < case.mix.shape[0] else None
    sdri, estimates = [], []
    for seed in seeds:
        chosen = replace(settings, seed=seed, n_sources=n_sources)
        est = separate(case.mix, chosen, rate=case_lib.RATE).sources
        sdri.append(float(np.mean(score(case.images[:, 0], est).sdr - sdr_mix)))
        estimates.append(est)
    return spec.name, sdri, estimates  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dev")
    parser.add_argument("--setting", default="n_fft=11000+hop=2750")
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--window", default="3,5", help="window sizes, comma-separated")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    seeds = seed_list(args.seeds)
    specs = case_specs(args.cases)
    windows = [int(w) for w in args.window.split(",")]
    print(f"{args.setting}, seeds {args.seeds}; medoid of N consecutive seeds\n")
    print(
        "| case | single seeds: mean (worst - mean) | "
        + " | ".join(f"medoid of {w}: mean (worst - mean)" for w in windows)
        + " |"
    )
    print("|---" * (len(windows) + 2) + "|")
    with ProcessPoolExecutor(min(args.jobs, 2)) as pool:
        futures = [pool.submit(one_case, spec, args.setting, seeds) for spec in specs]
        for future in futures:
            name, sdri, estimates = future.result()
            n = len(seeds)
            sim = np.array(
                [[similarity(estimates[i], estimates[j]) for j in range(n)] for i in range(n)]
            )
            single = np.array(sdri)
            cells = [f"{single.mean():.2f} ({single.min() - single.mean():+.2f})"]
            for window in windows:
                kept = []
                for lo in range(n - window + 1):
                    group = list(range(lo, lo + window))
                    score_of = [np.mean([sim[i, j] for j in group if j != i]) for i in group]
                    kept.append(sdri[group[int(np.argmax(score_of))]])
                medoid = np.array(kept)
                cells.append(f"{medoid.mean():.2f} ({medoid.min() - medoid.mean():+.2f})")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
