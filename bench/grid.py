"""Study harness: cases x settings x seeds through the library separation, resumable.

    python bench/grid.py run --cases dev,varied --settings frames --seeds 0-2 --jobs 2
    python bench/grid.py report --settings frames --seeds 0-4          # per-case tables
    python bench/grid.py spread --settings today,rule --seeds 0-9      # seed statistics

Cases: ``dev`` (every folder of ``../shared/data/dev``), ``varied`` (the random rooms of
:func:`cases.varied_specs`, simulated once and cached under ``out/study-cases``), ``sim``
(the twelve cases of ``bench/quality.py``), ``multi`` (24 random rooms with 3-4 mics,
two draws of :func:`cases.multi_specs`, cached like ``varied``), ``edge`` (12 rooms with 2-4
mics at the lengths where ``auto_stft``'s frame count decides, :func:`cases.edge_specs`), or a
comma-separated mix, or names. Settings: names of :data:`NAMED` (``frames`` is the frame-length grid), ``rule``
(the automatic STFT of :func:`ilrma_cli.pipeline.auto_stft` resolved per case), or
``key=value`` specs of :func:`quality.parse` on top of the CLI defaults. Every setting is resolved per case to a
concrete spec, so ``rule`` shares its runs with the grid setting it picks.

Each run is :func:`ilrma_cli.pipeline.separate` (PCA to ``n_src`` when there are more mics)
scored by :func:`ilrma_cli.metrics.score` (BSS Eval v3, best permutation) at mic 0 against
the source images there (``sdri``) and, where known, the early images (``sdri_early``);
SDRi subtracts the mixture channel's SDR. Rows are appended to ``out/study/runs.jsonl`` as
runs finish; a rerun skips the (case, spec, seed) already there. Workers are niced
processes with one BLAS thread each (``--jobs``, at most 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from quality import parse  # noqa: E402

from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import auto_stft  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "study"
CACHE = ROOT / "out" / "study-cases"
MAX_JOBS = 2

# Named settings (on top of the CLI defaults: 4 bases, 20 IVA + 100 ILRMA iterations, ip).
NAMED: dict[str, str] = {
    "f1024": "n_fft=1024+hop=256",
    "f2048": "n_fft=2048+hop=512",
    "today": "n_fft=4096+hop=1024",  # today's automatic STFT at 16 kHz (200 ms)
    "f8192": "n_fft=8192+hop=2048",
    "f11000": "n_fft=11000+hop=2750",
    "f11000b10": "n_fft=11000+hop=2750+n_basis=10",
    "f11000h2": "n_fft=11000+hop=5500",
}
GROUPS = {"frames": list(NAMED)}


def case_specs(selection: str) -> list[case_lib.CaseSpec | case_lib.RoomSpec | case_lib.DevSpec]:
    """The cases named by ``selection`` (a group of :func:`group_of`, or case names)."""
    groups = {
        "dev": case_lib.dev_specs(),
        "varied": case_lib.varied_specs(),
        "sim": list(case_lib.CASES),
        "multi": case_lib.multi_specs() + case_lib.multi_specs(12, seed=3032, first=12),
        "edge": case_lib.edge_specs(),
    }
    out: list = []
    for item in selection.split(","):
        if item in groups:
            out += groups[item]
        else:
            out += [s for group in groups.values() for s in group if item in s.name]
    return list({s.name: s for s in out}.values())


def group_of(name: str) -> str:
    """``dev``, ``varied``, ``multi``, ``edge`` or ``sim`` for a case name."""
    if name.startswith("v") and name[1:3].isdigit():
        return "varied"
    if name.startswith("w") and name[1:3].isdigit():
        return "multi"
    if name.startswith("e") and name[1:3].isdigit():
        return "edge"
    return "sim" if any(s.name == name for s in case_lib.CASES) else "dev"


def setting_names(selection: str) -> list[str]:
    out: list[str] = []
    for item in selection.split(","):
        out += GROUPS.get(item, [item])
    return out


def concrete(name: str, case: case_lib.Case) -> str:
    """The spec string a setting resolves to on ``case`` (``rule``: the automatic STFT,
    ``rule+key=value...``: that plus more settings)."""
    if name == "rule" or name.startswith("rule+"):
        stft = auto_stft(case_lib.RATE, n_samples=case.mix.shape[1])
        return f"n_fft={stft.n_fft}+hop={stft.hop}" + name.removeprefix("rule")
    return NAMED.get(name, name)


def seed_list(text: str) -> list[int]:
    """``0-4`` or ``0,3,7``."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",")]


_LOADED: dict[str, tuple[case_lib.Case, np.ndarray, np.ndarray | None]] = {}


def _load(spec: case_lib.CaseSpec | case_lib.RoomSpec | case_lib.DevSpec) -> tuple:
    """A case and the SDR of its mixture channel against the images / early images (cached)."""
    if spec.name not in _LOADED:
        case = case_lib.load(spec, CACHE)
        refs = case.images[:, 0]
        mix0 = np.stack([case.mix[0]] * len(refs))
        sdr_mix = score(refs, mix0).sdr
        sdr_mix_early = score(case.early, mix0).sdr if case.early is not None else None
        _LOADED[spec.name] = (case, sdr_mix, sdr_mix_early)
    return _LOADED[spec.name]


def run_one(
    spec: case_lib.CaseSpec | case_lib.RoomSpec | case_lib.DevSpec, setting: str, seed: int
) -> dict:
    """One separation and its scores (runs in a worker)."""
    case, sdr_mix, sdr_mix_early = _load(spec)
    items = setting.split("+")
    warm = [item for item in items if item.startswith(("start=warm", "start=prefit"))]
    settings = parse("+".join(item for item in items if item not in warm) or "default").settings
    n_src = case.images.shape[0]
    n_sources = n_src if n_src < case.mix.shape[0] else None
    chosen = replace(settings, seed=seed, n_sources=n_sources)
    start = time.perf_counter()
    if warm:  # the deterministic NMF start prototype (bench/warm_start.py)
        from warm_start import separate_warm

        prefit = warm[0].startswith("start=prefit")
        fit_iter = int(warm[0].removeprefix("start=prefit").removeprefix("start=warm") or 20)
        separation = separate_warm(case.mix, chosen, case_lib.RATE, fit_iter, prefit)
    else:
        separation = separate(case.mix, chosen, rate=case_lib.RATE)
    seconds = time.perf_counter() - start
    estimates = separation.sources
    sdr = score(case.images[:, 0], estimates).sdr
    row = {
        "case": spec.name,
        "spec": setting,
        "seed": seed,
        "sdri": float(np.mean(sdr - sdr_mix)),
        "sdri_per_source": [float(v) for v in sdr - sdr_mix],
        "loss": float(separation.result.loss[-1]),
        "n_frames": int(separation.result.separated.shape[-1]),
        "seconds": seconds,
    }
    if case.early is not None:
        sdr_early = score(case.early, estimates).sdr
        row["sdri_early"] = float(np.mean(sdr_early - sdr_mix_early))
    return row


def _init_worker() -> None:
    os.nice(10)


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> None:
    specs = case_specs(args.cases)
    for spec in specs:  # simulate (and cache) in the parent, once
        if not isinstance(spec, case_lib.DevSpec):
            case_lib.load(spec, CACHE)
    done = {(r["case"], r["spec"], r["seed"]) for r in read_rows(args.out)}
    tasks = []
    n_done = len(done)
    for seed in seed_list(args.seeds):  # seed-major: a partial study covers every case
        for spec in specs:
            case = _load(spec)[0]
            for name in setting_names(args.settings):
                key = (spec.name, concrete(name, case), seed)
                if key not in done:
                    done.add(key)
                    tasks.append((spec, key[1], seed))
    print(f"{len(tasks)} runs to do ({n_done} in {args.out})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(args.jobs, MAX_JOBS))
    with ProcessPoolExecutor(jobs, initializer=_init_worker) as pool, args.out.open("a") as sink:
        futures = [pool.submit(run_one, *task) for task in tasks]
        for n, future in enumerate(as_completed(futures), 1):
            row = future.result()
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            print(
                f"[{n}/{len(tasks)}] {row['case']:40s} {row['spec']:32s} seed {row['seed']}: "
                f"{row['sdri']:6.2f} dB {row['seconds']:5.1f} s",
                flush=True,
            )


def per_case(
    rows: list[dict],
    specs: list,
    names: list[str],
    seeds: list[int],
    metric: str,
    restarts: int = 1,
) -> dict[str, dict[str, list[float]]]:
    """``{case: {setting: [metric per seed]}}`` (settings resolved per case, seeds in order).

    With ``restarts`` N, the value for seed s is that of the run of seeds s..s+N-1 with the
    lowest final loss (what ``--restarts N --seed s`` keeps); only windows fully run count.
    """
    index = {(r["case"], r["spec"], r["seed"]): r for r in rows}
    out: dict[str, dict[str, list[float]]] = {}
    for spec in specs:
        case = _load(spec)[0]
        out[spec.name] = {}
        for name in names:
            key = concrete(name, case)
            values = []
            for s in seeds:
                window = [index.get((spec.name, key, s + k)) for k in range(restarts)]
                if all(r is not None for r in window):
                    kept = min(window, key=lambda r: r["loss"])  # type: ignore[index]
                    values.append(kept.get(metric))  # type: ignore[union-attr]
            out[spec.name][name] = [float(v) for v in values if v is not None]
    return out


def _cell(values: list[float], stat: Callable[[list[float]], float], n_seeds: int) -> str:
    if not values:
        return "-"
    mark = "" if len(values) == n_seeds else f" ({len(values)})"
    return f"{stat(values):.2f}{mark}"


def report(args: argparse.Namespace) -> None:
    """Markdown: per case, the mean over seeds of ``--metric`` for each setting; group means."""
    specs, names, seeds = (
        case_specs(args.cases),
        setting_names(args.settings),
        seed_list(args.seeds),
    )
    table = per_case(read_rows(args.out), specs, names, seeds, args.metric)
    print(f"{args.metric}, mean over seeds {args.seeds}\n")
    print("| case | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for case, by_setting in table.items():
        cells = [_cell(by_setting[n], np.mean, len(seeds)) for n in names]
        print(f"| {case} | " + " | ".join(cells) + " |")
    for group in ("dev", "varied", "sim", "multi", "edge"):
        members = [c for c in table if group_of(c) == group]
        if not members:
            continue
        cells = []
        for n in names:
            means = [np.mean(table[c][n]) for c in members if table[c][n]]
            cells.append(f"{np.mean(means):.2f}" if len(means) == len(members) else "-")
        print(f"| **mean {group}** | " + " | ".join(cells) + " |")


def spread(args: argparse.Namespace) -> None:
    """Markdown: per case and setting, mean / worst / best over seeds and worst - mean."""
    specs, names, seeds = (
        case_specs(args.cases),
        setting_names(args.settings),
        seed_list(args.seeds),
    )
    table = per_case(read_rows(args.out), specs, names, seeds, args.metric, args.restarts)
    restarts = f", restarts {args.restarts} (lowest final loss)" if args.restarts > 1 else ""
    print(f"{args.metric} over seeds {args.seeds}{restarts}: mean / worst / best (worst - mean)\n")
    print("| case | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    fails = dict.fromkeys(names, 0)
    for case, by_setting in table.items():
        cells = []
        for n in names:
            v = by_setting[n]
            if not v:
                cells.append("-")
                continue
            gap = min(v) - np.mean(v)
            fails[n] += gap < -1.0
            mark = "" if len(v) == len(seeds) else f" n={len(v)}"
            if args.compact:
                cells.append(f"{np.mean(v):.2f} ({gap:+.2f}){mark}")
            else:
                cells.append(f"{np.mean(v):.2f} / {min(v):.2f} / {max(v):.2f} ({gap:+.2f}){mark}")
        print(f"| {case} | " + " | ".join(cells) + " |")
    print("| cases with worst < mean - 1 dB | " + " | ".join(str(fails[n]) for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report", "spread"))
    parser.add_argument("--cases", default="dev,varied")
    parser.add_argument("--settings", default="frames")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--metric", default="sdri", help="sdri, sdri_early, seconds, n_frames")
    parser.add_argument("--restarts", type=int, default=1, help="spread: best-loss of N seeds")
    parser.add_argument("--compact", action="store_true", help="spread: only mean (worst - mean)")
    parser.add_argument("--out", type=Path, default=OUT / "runs.jsonl")
    args = parser.parse_args()
    os.nice(10)
    {"run": run, "report": report, "spread": spread}[args.command](args)


if __name__ == "__main__":
    main()
