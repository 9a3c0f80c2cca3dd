"""Medoid of N rank-1 ILRMA runs, then ONE full-rank refinement (issue 14), against ``--restarts N``.

    nice -n 10 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        .venv/bin/python bench/medoid_refine.py run            # rows -> docs/fullrank_data/medoid_refine.jsonl
    .venv/bin/python bench/medoid_refine.py check --case music_bass_pad_rt450 --seed 3
    .venv/bin/python bench/medoid_refine.py timing         # sample_data/mix.wav, warm, median of 3
    .venv/bin/python bench/medoid_refine.py report         # markdown table vs docs/fullrank_data/restarts.jsonl

Per dev case, at the defaults (automatic STFT, :class:`SeparationSettings` defaults, PCA to
the sources when there are more mics, as ``bench/restarts.py``): the rank-1 stage of the
default pipeline (``spatial="rank1"``, all else default) for seeds 0-19; for every window of
N consecutive seeds (N = 3, 5) the medoid of those rank-1 runs by :mod:`ilrma_cli.consensus`
(``signature`` + ``medoid``, as ``_best_of_restarts``), then the default refinement from the
medoid's state: :func:`ilrma_cli.engine.run` with the default (full-rank) config, the
rank-1 result as :class:`InitialState` and ``n_iter = iva_iter = 0``. Scored as
``bench/restarts.py`` (SDRi at mic 0 against the images, BSS Eval v3, best permutation).

Row kinds (``seed``: the window's first seed, ``kept``: the seed kept): ``rank1`` (one
rank-1 seed), ``refine1`` (that seed refined: what the default pipeline gives with
``--seed s``), ``medoid_rank1`` (the window's rank-1 medoid, unrefined), ``medoid_refine``
(the window's rank-1 medoid refined) and ``medoid_full`` (the medoid of the window's refined
runs: what ``--seed s --restarts N`` keeps, without running it again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import _load, case_specs, seed_list  # noqa: E402

from ilrma_cli.consensus import medoid, signature  # noqa: E402
from ilrma_cli.engine import InitialState, Result, mixing_matrices, run  # noqa: E402
from ilrma_cli.engine.fullrank_refine import fullrank_images  # noqa: E402
from ilrma_cli.engine.threads import set_threads  # noqa: E402
from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import Analysis, SourceSignals, analyse, separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "fullrank_data"
OUT = DATA / "medoid_refine.jsonl"
RESTARTS = DATA / "restarts.jsonl"
SEEDS = "0-19"
WINDOWS = (3, 5)


def prepare(mix: np.ndarray, n_sources: int | None, rate: int) -> Analysis:
    """The default settings' analysis (automatic STFT resolved) of ``mix``."""
    settings = replace(SeparationSettings(), n_sources=n_sources, restarts=1)
    return analyse(mix, settings, rate)


def rank1(obs: np.ndarray, settings: SeparationSettings, seed: int) -> Result:
    """The rank-1 stage of the default pipeline with ``seed`` (``spatial="rank1"``, all else default)."""
    config = replace(settings.ilrma, spatial="rank1")
    return run(obs, config, seed, n_sources=settings.n_sources)


def refine(obs: np.ndarray, settings: SeparationSettings, start: Result, seed: int) -> Result:
    """The default full-rank refinement from the rank-1 result ``start``: the engine's ``run``
    with the default config, ``start`` as the initial state and no IVA / ILRMA iteration."""
    assert settings.ilrma.spatial == "fullrank"
    config = replace(settings.ilrma, n_iter=0, iva_iter=0)
    init = InitialState(demix=start.demix, basis=start.basis, activation=start.activation)
    return run(obs, config, seed, init=init, n_sources=settings.n_sources)


def sources(obs: np.ndarray, result: Result, analysis: Analysis) -> np.ndarray:
    """The time signals at the reference mic ``(n_sources, n_samples)``, as the pipeline makes them
    (:func:`ilrma_cli.pipeline.separate_analysis`)."""
    settings = analysis.settings
    ref_mic = settings.ref_mic
    if result.fullrank is not None:
        spectra = fullrank_images(obs, result.fullrank, ref_mic)[:, None]
        signals = SourceSignals(spectra, None, ref_mic, analysis.n_samples, settings.stft)
    else:
        mixing = mixing_matrices(result.demix)
        signals = SourceSignals(
            result.separated, mixing, ref_mic, analysis.n_samples, settings.stft
        )
    return signals.full()


def sdri(spec: object, estimates: np.ndarray) -> float:
    """Mean SDRi at mic 0 against the source images (as bench/restarts.py)."""
    case, sdr_mix, _ = _load(spec)
    return float(np.mean(score(case.images[:, 0], estimates).sdr - sdr_mix))


def n_sources_of(case: case_lib.Case) -> int | None:
    n_src = case.images.shape[0]
    return n_src if n_src < case.mix.shape[0] else None


def run_case(spec: object, sink, seeds: list[int]) -> None:  # noqa: ANN001
    case = _load(spec)[0]
    name = spec.name  # type: ignore[attr-defined]
    analysis = prepare(case.mix, n_sources_of(case), case_lib.RATE)
    obs, settings = analysis.obs, analysis.settings
    assert obs is not None and settings.stft is not None

    def emit(row: dict) -> None:
        row = {"case": name, **row}
        sink.write(json.dumps(row) + "\n")
        sink.flush()
        print(json.dumps(row), flush=True)

    start = time.perf_counter()
    results, signatures, rank1_sdri = {}, {}, {}
    for seed in seeds:
        t0 = time.perf_counter()
        results[seed] = rank1(obs, settings, seed)
        seconds = time.perf_counter() - t0
        signatures[seed] = signature(obs, results[seed], settings.ref_mic, settings.stft)
        rank1_sdri[seed] = sdri(spec, sources(obs, results[seed], analysis))
        emit({"kind": "rank1", "n": 1, "seed": seed, "kept": seed, "sdri": rank1_sdri[seed],
              "seconds": seconds, "loss": float(results[seed].loss[-1])})  # fmt: skip
    refined: dict[int, float] = {}
    full_signatures: dict[int, np.ndarray] = {}
    for seed in seeds:  # every seed refined: the default pipeline's run with --seed seed
        t0 = time.perf_counter()
        result = refine(obs, settings, results[seed], seed)
        seconds = time.perf_counter() - t0
        refined[seed] = sdri(spec, sources(obs, result, analysis))
        full_signatures[seed] = signature(obs, result, settings.ref_mic, settings.stft)
        emit({"kind": "refine1", "n": 1, "seed": seed, "kept": seed, "sdri": refined[seed],
              "seconds": seconds})  # fmt: skip
    for n in WINDOWS:
        for first in seeds[: len(seeds) - n + 1]:
            window = seeds[first - seeds[0] : first - seeds[0] + n]
            kept = window[medoid([signatures[s] for s in window])]
            emit({"kind": "medoid_rank1", "n": n, "seed": first, "kept": kept,
                  "sdri": rank1_sdri[kept]})  # fmt: skip
            emit({"kind": "medoid_refine", "n": n, "seed": first, "kept": kept,
                  "sdri": refined[kept]})  # fmt: skip
            # what --seed first --restarts n keeps: the medoid of the whole-pipeline runs
            kept = window[medoid([full_signatures[s] for s in window])]
            emit({"kind": "medoid_full", "n": n, "seed": first, "kept": kept,
                  "sdri": refined[kept]})  # fmt: skip
    print(f"# {name}: {time.perf_counter() - start:.1f} s", flush=True)


def cmd_run(args: argparse.Namespace) -> None:
    seeds = seed_list(args.seeds)
    done = set()  # cases whose last row is there (a case is written whole or redone)
    if args.out.exists():
        done = {r["case"] for r in map(json.loads, args.out.open()) if r["kind"] == "medoid_full"
                and r["n"] == WINDOWS[-1] and r["seed"] == seeds[-WINDOWS[-1]]}  # fmt: skip
    with args.out.open("a") as sink:
        for spec in case_specs(args.cases):
            if spec.name in done:
                continue
            run_case(spec, sink, seeds)


def cmd_check(args: argparse.Namespace) -> None:
    """refine(rank-1 state of seed s) against the default pipeline with --seed s, on one case."""
    spec = next(s for s in case_specs("dev") if s.name == args.case)
    case = _load(spec)[0]
    analysis = prepare(case.mix, n_sources_of(case), case_lib.RATE)
    obs, settings = analysis.obs, analysis.settings
    ours = refine(obs, settings, rank1(obs, settings, args.seed), args.seed)
    mine = sources(obs, ours, analysis)
    chosen = replace(SeparationSettings(), seed=args.seed, n_sources=n_sources_of(case), restarts=1)
    theirs = separate(case.mix, chosen, rate=case_lib.RATE)
    ref = theirs.sources
    print(f"case {args.case} seed {args.seed}: shapes {mine.shape} {ref.shape}")
    print(
        f"  sources bit-identical: {np.array_equal(mine, ref)}; "
        f"max |diff| {float(np.max(np.abs(mine - ref))):.3g} (max |ref| {float(np.max(np.abs(ref))):.3g})"
    )
    print(
        f"  fullrank model identical: "
        f"{all(np.array_equal(getattr(ours.fullrank, k), getattr(theirs.result.fullrank, k)) for k in ('diagonaliser', 'spatial_weights', 'basis', 'activation'))}"
    )
    print(f"  final loss ours {ours.loss[-1]!r} pipeline {theirs.result.loss[-1]!r}")
    print(f"  SDRi ours {sdri(spec, mine):.6f} pipeline {sdri(spec, ref):.6f}")


def cmd_timing(args: argparse.Namespace) -> None:
    import soundfile as sf

    mix, rate = sf.read(ROOT / "sample_data" / "mix.wav", dtype="float64", always_2d=True)
    mix = mix.T
    analysis = prepare(mix, None, rate)
    obs, settings = analysis.obs, analysis.settings
    print(f"sample_data/mix.wav: {mix.shape[1] / rate:.2f} s, {mix.shape[0]} ch, stft {settings.stft}, "
          f"obs {obs.shape}")  # fmt: skip
    start = rank1(obs, settings, 0)  # warm-up (kernels loaded / compiled)
    refine(obs, settings, start, 0)
    keys = ("rank1", "refine", "full run (one seed)", "signature rank1", "signature fullrank",
            "medoid of 5 signatures")  # fmt: skip
    times: dict[str, list[float]] = {key: [] for key in keys}
    for k in range(3):
        t0 = time.perf_counter()
        r = rank1(obs, settings, k)
        times["rank1"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        refine(obs, settings, r, k)
        times["refine"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full = run(obs, settings.ilrma, k, n_sources=settings.n_sources)
        times["full run (one seed)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sig = signature(obs, r, settings.ref_mic, settings.stft)
        times["signature rank1"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        signature(obs, full, settings.ref_mic, settings.stft)
        times["signature fullrank"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        medoid([sig] * 5)
        times["medoid of 5 signatures"].append(time.perf_counter() - t0)
    for key, values in times.items():
        print(
            f"  {key}: median {np.median(values):.3f} s  ({', '.join(f'{v:.3f}' for v in values)})"
        )


def _stats(values: list[float]) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    return mean, min(values) - mean, min(values)


def _table(columns: list[tuple[str, list[dict], object]], title: str) -> None:
    """Per dev case and column: mean over the windows (worst window - mean); fail counts."""
    names = [s.name for s in case_specs("dev")]
    print(f"{title}\n")
    print("| case | " + " | ".join(c[0] for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    fails = [0] * len(columns)
    means: list[list[float]] = [[] for _ in columns]
    worsts: list[list[float]] = [[] for _ in columns]
    for name in names:
        cells = []
        for k, (_, rows, keep) in enumerate(columns):
            values = [r["sdri"] for r in rows if r["case"] == name and keep(r)]  # type: ignore[operator]
            if not values:
                cells.append("-")
                continue
            mean, gap, worst = _stats(values)
            fails[k] += gap < -1.0
            means[k].append(mean)
            worsts[k].append(worst)
            cells.append(f"{mean:.2f} ({gap:+.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")

    def summary(values: list[list[float]]) -> str:
        return " | ".join(f"{np.mean(v):.2f}" if len(v) == len(names) else "-" for v in values)

    print(f"| **mean of the case means** | {summary(means)} |")
    print(f"| mean of the cases' worst windows | {summary(worsts)} |")
    print("| **cases with worst more than 1 dB below the mean** | "
          + " | ".join(map(str, fails)) + " |\n")  # fmt: skip


def cmd_report(args: argparse.Namespace) -> None:
    ours = [json.loads(line) for line in args.out.open()]
    old = [json.loads(line) for line in RESTARTS.open()]

    def kind(name: str, n: int, last: int) -> object:
        return lambda r: r["kind"] == name and r["n"] == n and r["seed"] + n - 1 <= last

    def old_n(n: int) -> object:
        return lambda r: r["restarts"] == n

    _table(
        [
            ("defaults, restarts 1", old, old_n(1)),
            ("full pipeline, restarts 3", old, old_n(3)),
            ("full pipeline, restarts 5", old, old_n(5)),
            ("rank-1 medoid of 3, refine", ours, kind("medoid_refine", 3, 9)),
            ("rank-1 medoid of 5, refine", ours, kind("medoid_refine", 5, 9)),
            ("rank-1 only, 1 seed", ours, kind("rank1", 1, 9)),
            ("rank-1 medoid of 5, unrefined", ours, kind("medoid_rank1", 5, 9)),
        ],
        "Seeds 0-9. SDRi (dB) at mic 0: mean over the windows of N consecutive seeds "
        "(worst window - mean). The first three columns are docs/fullrank_data/restarts.jsonl.",
    )
    last = max(r["seed"] for r in ours)
    _table(
        [
            ("defaults, 1 seed", ours, kind("refine1", 1, last)),
            ("full pipeline, restarts 3", ours, kind("medoid_full", 3, last)),
            ("full pipeline, restarts 5", ours, kind("medoid_full", 5, last)),
            ("rank-1 medoid of 3, refine", ours, kind("medoid_refine", 3, last)),
            ("rank-1 medoid of 5, refine", ours, kind("medoid_refine", 5, last)),
        ],
        f"Seeds 0-{last}, all columns from medoid_refine.jsonl (the full-pipeline medoid "
        "reconstructed from every seed's refined run: the medoid of their signatures, as "
        "_best_of_restarts).",
    )
    # the refined single seeds and reconstructed full-pipeline medoids against restarts.jsonl
    index = {(r["case"], r["seed"], r["restarts"]): r for r in old}
    pairs = [(r, index[(r["case"], r["seed"], 1 if r["kind"] == "refine1" else r["n"])])
             for r in ours if r["kind"] in ("refine1", "medoid_full")
             and (r["case"], r["seed"], 1 if r["kind"] == "refine1" else r["n"]) in index]  # fmt: skip
    diffs = [abs(a["sdri"] - b["sdri"]) for a, b in pairs]
    kept = sum(a["kept"] == b["kept"] for a, b in pairs)
    if pairs:
        print(
            f"Check against restarts.jsonl: {len(pairs)} (case, seed, N) rows of refine1 / "
            f"medoid_full, same kept seed in {kept}, max |SDRi difference| {max(diffs):.3g} dB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "check", "timing", "report"))
    parser.add_argument("--cases", default="dev")
    parser.add_argument("--case", default="music_bass_pad_rt450")
    parser.add_argument("--seed", type=int, default=0, help="check: the seed")
    parser.add_argument("--seeds", default=SEEDS, help="run: consecutive seeds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    set_threads(1)
    {"run": cmd_run, "check": cmd_check, "timing": cmd_timing, "report": cmd_report}[args.command](
        args
    )


if __name__ == "__main__":
    main()
