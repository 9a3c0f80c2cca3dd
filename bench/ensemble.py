"""Averaging restarts instead of keeping one (issue 14, seed spread): a study.

    .venv/bin/python bench/ensemble.py run --seeds 0-19 --jobs 2   # sources -> out/ensemble
    .venv/bin/python bench/ensemble.py report --seeds 0-19         # markdown tables
    .venv/bin/python bench/ensemble.py run --cases varied,sim --kinds full --seeds 0-4
    .venv/bin/python bench/ensemble.py report --cases varied,sim --kinds full --seeds 0-4 --windows 5

``run`` separates every case (``--cases``, as ``bench/grid.py``; the dev cases by default) with the defaults (``full``) and with ``--spatial rank1``
(``rank1``) for each seed, through :func:`ilrma_cli.pipeline.separate` as ``bench/grid.py``
does, and keeps the sources at mic 0 (float32 ``.npy``). ``report`` scores, for every window
of N consecutive seeds: one seed (the window's first), the medoid of the window
(:mod:`ilrma_cli.consensus`, what ``--restarts N`` keeps) and the *mean* of the window's
runs, each run's sources paired to the medoid's by :func:`ilrma_cli.consensus.similarity`'s
pairing and then averaged sample by sample. SDRi at mic 0 against the images (BSS Eval v3,
best permutation), as ``bench/grid.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import _load, case_specs, seed_list  # noqa: E402

from ilrma_cli.consensus import medoid, pairing, similarity  # noqa: E402
from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import StftConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "ensemble"
KINDS = ("full", "rank1")


def path_of(case: str, kind: str, seed: int) -> Path:
    return OUT / case / f"{kind}_{seed}.npy"


def run_one(spec: case_lib.DevSpec, kind: str, seed: int) -> str:
    """One separation of ``spec`` with ``kind``'s settings and ``seed``; its sources saved."""
    out = path_of(spec.name, kind, seed)
    if out.exists():
        return f"{out} (kept)"
    case, _, _ = _load(spec)
    n_src = case.images.shape[0]
    settings = SeparationSettings(
        seed=seed, n_sources=n_src if n_src < case.mix.shape[0] else None, restarts=1
    )
    settings = kind_settings(settings, kind)
    sources = separate(case.mix, settings, rate=case_lib.RATE).sources
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, sources.astype(np.float32))
    return str(out)


# Kind suffixes: ``:itN`` full-rank iterations, ``:niN`` ILRMA iterations, ``:ivaN`` IVA ones.
ENGINE_SUFFIXES = {"it": "fullrank_iter", "ni": "n_iter", "iva": "iva_iter"}


def kind_settings(settings: SeparationSettings, kind: str) -> SeparationSettings:
    """``settings`` changed as ``kind`` says: ``full``, ``freq`` (the full-rank model with
    per-frequency weights) or ``rank1``, then ``@NFFT`` (hop a quarter) and any of
    :data:`ENGINE_SUFFIXES`, as in ``full@8192:it60:ni50``."""
    head, *suffixes = kind.split(":")
    base, _, frame = head.partition("@")
    for suffix in suffixes:
        name = suffix.rstrip("0123456789")
        value = int(suffix[len(name) :])
        settings = replace(
            settings, ilrma=replace(settings.ilrma, **{ENGINE_SUFFIXES[name]: value})
        )
    if base == "rank1":
        settings = replace(settings, ilrma=replace(settings.ilrma, spatial="rank1"))
    if base == "freq":
        settings = replace(settings, ilrma=replace(settings.ilrma, fullrank_weights="frequency"))
    if frame:
        n_fft = int(frame)
        settings = replace(settings, stft=StftConfig(n_fft, n_fft // 4))
    return settings


def run(args: argparse.Namespace) -> None:
    kinds = args.kinds.split(",")
    jobs = [
        (s, k, seed)
        for s in case_specs(args.cases)
        for seed in seed_list(args.seeds)
        for k in kinds
    ]
    with ProcessPoolExecutor(args.jobs, initializer=os.nice, initargs=(10,)) as pool:
        for n, done in enumerate(pool.map(run_one, *zip(*jobs, strict=True)), 1):
            print(f"[{n}/{len(jobs)}] {done}", flush=True)


def paired(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``other``'s sources reordered to pair with ``reference``'s (both ``(n, samples)``), as
    ``--restarts`` pairs them (:func:`ilrma_cli.consensus.pairing`)."""
    return other[pairing(reference, other)[1]]


def sdri(spec: case_lib.DevSpec, estimates: np.ndarray) -> float:
    case, sdr_mix, _ = _load(spec)
    length = min(estimates.shape[1], case.images.shape[-1])
    return float(np.mean(score(case.images[:, 0, :length], estimates[:, :length]).sdr - sdr_mix))


def report(args: argparse.Namespace) -> None:
    seeds = seed_list(args.seeds)
    for kind in args.kinds.split(","):
        for size in (int(n) for n in args.windows.split(",")):
            print(f"\n{kind}, windows of {size} of seeds {args.seeds}: mean (worst - mean)\n")
            print("| case | one seed | medoid | mean of the window | mean of the 3 most central |")
            print("|---|---|---|---|---|")
            for spec in case_specs(args.cases):
                runs = {s: np.load(path_of(spec.name, kind, s)) for s in seeds}
                cols: dict[str, list[float]] = {"one": [], "medoid": [], "mean": [], "central": []}
                for first in range(len(seeds) - size + 1):
                    window = [runs[s] for s in seeds[first : first + size]]
                    kept = medoid(window)
                    aligned = [paired(window[kept], w) for w in window]
                    closeness = [
                        np.mean(
                            [
                                abs(np.corrcoef(a, b)[0, 1])
                                for a, b in zip(x, window[kept], strict=True)
                            ]
                        )
                        for x in aligned
                    ]
                    central = [aligned[i] for i in np.argsort(closeness)[::-1][:3]]
                    cols["one"].append(sdri(spec, window[0]))
                    cols["medoid"].append(sdri(spec, window[kept]))
                    cols["mean"].append(sdri(spec, np.mean(aligned, axis=0)))
                    cols["central"].append(sdri(spec, np.mean(central, axis=0)))
                cells = [f"{np.mean(v):.2f} ({min(v) - np.mean(v):+.2f})" for v in cols.values()]
                print(f"| {spec.name} | " + " | ".join(cells) + " |", flush=True)


def resolutions(args: argparse.Namespace) -> None:
    """Means over windows of N seeds: each kind alone, the kinds taken in turn (seed i of the
    window at kind i mod len(kinds): the same cost), and every kind for every seed."""
    seeds = seed_list(args.seeds)
    kinds = args.kinds.split(",")
    size = int(args.windows)
    heads = [*kinds, "in turn", "all kinds", "most agreeing kind"]
    print(f"\nwindows of {size} of seeds {args.seeds}: mean (worst - mean)\n")
    print("| case | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for spec in case_specs(args.cases):
        runs = {(k, s): np.load(path_of(spec.name, k, s)) for k in kinds for s in seeds}
        cols: dict[str, list[float]] = {h: [] for h in heads}
        for first in range(len(seeds) - size + 1):
            window = seeds[first : first + size]
            sets = {k: [runs[k, s] for s in window] for k in kinds}
            sets["in turn"] = [runs[kinds[i % len(kinds)], s] for i, s in enumerate(window)]
            sets["all kinds"] = [runs[k, s] for s in window for k in kinds]
            agreement = {}
            for head, members in sets.items():
                kept = medoid(members)
                aligned = [paired(members[kept], w) for w in members]
                cols[head].append(sdri(spec, np.mean(aligned, axis=0)))
                if head in kinds:
                    agreement[head] = np.mean(
                        [similarity(a, b) for i, a in enumerate(members) for b in members[:i]]
                    )
            picked = max(kinds, key=lambda k: agreement[k])
            cols["most agreeing kind"].append(cols[picked][-1])
        cells = [f"{np.mean(v):.2f} ({min(v) - np.mean(v):+.2f})" for v in cols.values()]
        print(f"| {spec.name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--jobs", type=int, default=2)
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--windows", default="3,5")
    p_res = sub.add_parser("resolutions")
    p_res.add_argument("--windows", default="5")
    for p in (p_run, p_rep, p_res):
        p.add_argument("--seeds", default="0-19")
        p.add_argument("--cases", default="dev")
        p.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    {"run": run, "report": report, "resolutions": resolutions}[args.command](args)


if __name__ == "__main__":
    main()
