"""Seed spread with ``--restarts N`` (the mean of N runs since session 9; the medoid before) against single seeds, per case.

    python bench/restarts.py --cases dev --restarts 3,5 --seeds 0-9 --jobs 2

For every window of N consecutive seeds in ``--seeds`` (``--seed s --restarts N`` for
s = first .. last - N + 1), one :func:`ilrma_cli.pipeline.separate` with the CLI's
defaults, scored as in ``bench/grid.py`` (SDRi at mic 0, BSS Eval v3, best permutation).
Prints per case the mean over the windows and the worst window minus that mean, next to
the single seeds' (``--restarts 1``, one run per seed). Rows go to ``out/restarts.jsonl``.
"""

from __future__ import annotations

import argparse
import json
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

from ilrma_cli.engine.threads import set_threads  # noqa: E402
from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "out" / "restarts.jsonl"


def one_run(spec: object, seed: int, restarts: int) -> dict:
    """One separation of ``spec`` with ``--seed seed --restarts restarts`` and its SDRi."""
    set_threads(1)
    case, sdr_mix, _ = _load(spec)
    n_src = case.images.shape[0]
    n_sources = n_src if n_src < case.mix.shape[0] else None
    settings = replace(SeparationSettings(), seed=seed, restarts=restarts, n_sources=n_sources)
    separation = separate(case.mix, settings, rate=case_lib.RATE)
    sdr = score(case.images[:, 0], separation.sources).sdr
    row = {"case": spec.name, "seed": seed, "restarts": restarts, "kept": separation.seed}  # type: ignore[attr-defined]
    return {**row, "sdri": float(np.mean(sdr - sdr_mix))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dev")
    parser.add_argument("--restarts", default="3,5")
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    seeds = seed_list(args.seeds)
    counts = [1] + [int(n) for n in args.restarts.split(",")]
    specs = case_specs(args.cases)
    done = set()
    if args.out.exists():
        done = {(r["case"], r["seed"], r["restarts"]) for r in map(json.loads, args.out.open())}
    todo = [(spec, s, n) for spec in specs for n in counts for s in seeds[: len(seeds) - n + 1]
            if (spec.name, s, n) not in done]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(min(args.jobs, 2)) as pool:
        for row in pool.map(one_run, *zip(*todo, strict=True)) if todo else []:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in args.out.open()]
    print(f"SDRi (dB): mean over the windows of N consecutive seeds in {args.seeds} "
          "(worst window - mean)\n")  # fmt: skip
    print("| case | " + " | ".join(f"restarts {n}" for n in counts) + " |")
    print("|---" * (len(counts) + 1) + "|")
    fails = dict.fromkeys(counts, 0)
    for spec in specs:
        cells = []
        for n in counts:
            values = [r["sdri"] for r in rows if r["case"] == spec.name and r["restarts"] == n
                      and r["seed"] in seeds[: len(seeds) - n + 1]]  # fmt: skip
            mean = float(np.mean(values))
            fails[n] += min(values) < mean - 1.0
            cells.append(f"{mean:.2f} ({min(values) - mean:+.2f})")
        print(f"| {spec.name} | " + " | ".join(cells) + " |")
    print("| worst more than 1 dB below the mean | "
          + " | ".join(str(fails[n]) for n in counts) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
