"""Quality of the full-rank refinement on the dev cases: SDRi at mic 0 per case and seed.

    nice -n 10 python bench/fullrank_quality.py --seeds 0,1,2        # runs, appended to a JSONL file
    python bench/fullrank_quality.py --report                        # tables from that file

Methods (each a row per case and seed; "default" is ``ilrma separate``'s defaults through
:func:`ilrma_cli.pipeline.separate`; the 4-mic case asks for 2 sources):

- ``ilrma``: the defaults (4096/1024 at 16 kHz), projection back to mic 0;
- ``wiener0``: the same ILRMA solution as the start of the full-rank model (weight floor
  1e-2), no iteration, through the multichannel Wiener filter (the effect of the filter alone);
- ``refine``: that start refined by ``--refine-iter`` FastMNMF2 iterations, Wiener output;
- ``ilrma@N`` / ``refine@N``: the same with the STFT N/N/4 in both stages (8192, 11000);
- ``pra``: pyroomacoustics' ``fastmnmf2`` with its own start (K = 16, 4096/2048, 100 iterations);
  ``pra@2048`` / ``pra@8192`` / ``pra@11000`` at 2048/512, 8192/2048 and 11000/2750;
  ``pra8`` / ``pra8@N``: the same with K = 8;
- ``refine16`` / ``refine16@N``: the refinement with the NMF refitted to 16 bases, floor 5e-2;
- ``random``: our iterations from the same kind of random start, at ``pra``'s settings;
- ``study`` / ``study@N``: SDRi of the refinement after ``--checkpoints`` iterations (10, 30,
  100) for each of ``--floors`` (1e-2, 1e-3) (``--methods study --out out/fullrank_study.jsonl``).

SDR is BSS Eval v3 (:func:`ilrma_cli.metrics.score`, best permutation) against the
source images at mic 0; SDRi subtracts the SDR of mic 0 itself. ``seconds`` is the
time of the method (the refinement's includes its ILRMA stage). One BLAS thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import DATA, RATE, read  # noqa: E402

from ilrma_cli.engine.fullrank_refine import fullrank_images, refine_fullrank  # noqa: E402
from ilrma_cli.metrics import score  # noqa: E402
from ilrma_cli.pipeline import separate
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import StftConfig, istft, stft  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "fullrank_quality.jsonl"
CASES = sorted(p.name for p in (DATA / "dev").iterdir() if (p / "mix.wav").exists())
FRAMES = {"": StftConfig(4096, 1024, "hann"), "@8192": StftConfig(8192, 2048, "hann")}
FRAMES["@11000"] = StftConfig(11000, 2750, "hann")
PRA_FRAMES = {"": StftConfig(4096, 2048, "hann"), **{k: v for k, v in FRAMES.items() if k}}
PRA_FRAMES["@2048"] = StftConfig(2048, 512, "hann")
PRA_BASES = {"pra": 16, "pra8": 8}


def load(case: str) -> tuple[np.ndarray, np.ndarray]:
    """Mixture ``(n_mics, n)`` and the source images at mic 0 ``(2, n)``."""
    folder = DATA / "dev" / case
    return read(folder / "mix.wav"), np.stack([read(folder / f"src{i}.wav")[0] for i in (1, 2)])


def sdri(refs: np.ndarray, estimates: np.ndarray, mix: np.ndarray) -> float:
    values = score(refs, estimates, mix[0]).sdri
    assert values is not None
    return float(np.mean(values))


def ilrma_and_refine(
    mix: np.ndarray, refs: np.ndarray, seed: int, stft_config: StftConfig, refine_iter: int
) -> dict[str, tuple[float, float]]:
    """``{method: (sdri, seconds)}`` for ILRMA, its Wiener start and its refinement."""
    settings = SeparationSettings(stft=stft_config, seed=seed, n_sources=len(refs), restarts=1)
    start = time.perf_counter()
    separation = separate(mix, settings, rate=RATE)
    estimates = separation.sources
    t_ilrma = time.perf_counter() - start
    out = {"ilrma": (sdri(refs, estimates, mix), t_ilrma)}
    obs = stft(mix, stft_config)
    result = separation.result
    n = mix.shape[1]
    for name, n_iter in (("wiener0", 0), ("refine", refine_iter)):
        start = time.perf_counter()
        model = refine_fullrank(
            obs,
            result.demix,
            result.basis,
            result.activation,
            n_iter,
            n_basis=None,
            weight_floor=1e-2,
        )
        images = fullrank_images(obs, model, 0)
        estimates = istft(images, n, stft_config)
        out[name] = (sdri(refs, estimates, mix), t_ilrma + time.perf_counter() - start)
    return out


def refine16(
    mix: np.ndarray, refs: np.ndarray, seed: int, config: StftConfig
) -> tuple[float, float]:
    """ILRMA, then 100 iterations with the NMF refitted to 16 bases and weight floor 5e-2."""
    settings = SeparationSettings(stft=config, seed=seed, n_sources=len(refs), restarts=1)
    start = time.perf_counter()
    result = separate(mix, settings, rate=RATE).result
    obs = stft(mix, config)
    model = refine_fullrank(
        obs, result.demix, result.basis, result.activation, 100, n_basis=16, weight_floor=0.05
    )
    estimates = istft(fullrank_images(obs, model, 0), mix.shape[1], config)
    return sdri(refs, estimates, mix), time.perf_counter() - start


def random_start(mix: np.ndarray, refs: np.ndarray, seed: int) -> tuple[float, float]:
    """Our iterations from pyroomacoustics' kind of start (``pra``'s settings, our RNG)."""
    from ilrma_cli.engine.fullrank_compiled import iterate_compiled
    from ilrma_cli.engine.fullrank_refine import random_model
    from ilrma_cli.engine.observation import unit_power_features

    config = StftConfig(4096, 2048, "hann")
    start = time.perf_counter()
    obs = stft(mix, config)
    n_mics, n_freq, n_frames = obs.shape
    rng = np.random.default_rng(seed)
    model = random_model(n_freq, n_frames, n_mics, len(refs), 16, rng)
    iterate_compiled(unit_power_features(obs)[0], model, 100, record_loss=False)
    estimates = istft(fullrank_images(obs, model, 0), mix.shape[1], config)
    return sdri(refs, estimates, mix), time.perf_counter() - start


def iterations_study(
    mix: np.ndarray,
    refs: np.ndarray,
    seed: int,
    frames: str,
    checkpoints: tuple[int, ...],
    floors: tuple[float, ...],
) -> dict[str, tuple[float, float]]:
    """SDRi after each of ``checkpoints`` iterations, for each weight floor.

    Chunks of iterations continue one run exactly (each chunk starts with the basis update
    the previous chunk deferred), so one run gives every checkpoint.
    """
    from ilrma_cli.engine.fullrank_compiled import iterate_compiled
    from ilrma_cli.engine.fullrank_refine import initial_model
    from ilrma_cli.engine.observation import unit_power_features

    config = FRAMES[frames]
    settings = SeparationSettings(stft=config, seed=seed, n_sources=len(refs), restarts=1)
    result = separate(mix, settings, rate=RATE).result
    obs = stft(mix, config)
    feats = unit_power_features(obs)[0]
    out = {}
    for floor in floors:
        model = initial_model(
            feats, result.demix, result.basis, result.activation, None, None, floor
        )
        done = 0
        start = time.perf_counter()
        for n_iter in checkpoints:
            iterate_compiled(feats, model, n_iter - done, record_loss=False)
            done = n_iter
            estimates = istft(fullrank_images(obs, model, 0), mix.shape[1], config)
            out[f"it{n_iter}/floor{floor:g}{frames}"] = (
                sdri(refs, estimates, mix),
                time.perf_counter() - start,
            )
    return out


def pyroomacoustics_fastmnmf2(
    mix: np.ndarray, refs: np.ndarray, seed: int, config: StftConfig, n_basis: int = 16
) -> tuple[float, float]:
    """pyroomacoustics' ``fastmnmf2`` (100 iterations, ``n_basis`` bases), output at mic 0."""
    import pyroomacoustics as pra

    start = time.perf_counter()
    obs = stft(mix, config)
    np.random.seed(seed)  # noqa: NPY002  (pra draws its start from the global generator)
    out = pra.bss.fastmnmf2(
        obs.transpose(2, 1, 0), n_src=len(refs), n_iter=100, n_components=n_basis
    )
    estimates = istft(out.transpose(2, 1, 0), mix.shape[1], config)
    return sdri(refs, estimates, mix), time.perf_counter() - start


def run(
    seeds: list[int],
    methods: list[str],
    refine_iter: int,
    cases: list[str],
    out: Path,
    checkpoints: tuple[int, ...] = (10, 30, 100),
    floors: tuple[float, ...] = (1e-2, 1e-3),
) -> None:
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done.add((row["case"], row["seed"], row["method"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for case in cases:
            mix, refs = load(case)
            rows = []
            for frames in [f for f in FRAMES if f"refine{f}" in methods]:
                wanted = [f"{m}{frames}" for m in ("ilrma", "wiener0", "refine")]
                if all((case, seed, m) in done for m in wanted):
                    continue
                got = ilrma_and_refine(mix, refs, seed, FRAMES[frames], refine_iter)
                rows += [(f"{m}{frames}", *v) for m, v in got.items()]
            for frames in [f for f in FRAMES if f"study{f}" in methods]:
                last = f"it{checkpoints[-1]}/floor{floors[-1]:g}{frames}"
                if (case, seed, last) not in done:
                    got = iterations_study(mix, refs, seed, frames, checkpoints, floors)
                    rows += [(m, *v) for m, v in got.items()]
            for frames in [f for f in FRAMES if f"refine16{f}" in methods]:
                if (case, seed, f"refine16{frames}") not in done:
                    got = refine16(mix, refs, seed, FRAMES[frames])
                    rows.append((f"refine16{frames}", *got))
            if "random" in methods and (case, seed, "random") not in done:
                rows.append(("random", *random_start(mix, refs, seed)))
            for (name, n_basis), (frames, config) in product(PRA_BASES.items(), PRA_FRAMES.items()):
                method = f"{name}{frames}"
                if method in methods and (case, seed, method) not in done:
                    got = pyroomacoustics_fastmnmf2(mix, refs, seed, config, n_basis)
                    rows.append((method, *got))
            with out.open("a") as f:
                for method, value, seconds in rows:
                    row = {"case": case, "seed": seed, "method": method, "sdri": value}
                    f.write(json.dumps({**row, "seconds": seconds}) + "\n")
                    print(f"{case:26s} {seed} {method:16s} {value:6.2f} dB {seconds:6.1f} s")


def report(out: Path, seeds: set[int], methods: list[str] | None) -> None:
    """Markdown tables: mean SDRi per case and method, worst seed minus mean, seconds.

    Only the rows of ``seeds`` and ``methods`` (all if None).
    """
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r for r in rows if r["seed"] in seeds and (methods is None or r["method"] in methods)]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table: dict[tuple[str, str], list[float]] = {}
    secs: dict[str, list[float]] = {}
    for r in rows:
        table.setdefault((r["case"], r["method"]), []).append(r["sdri"])
        secs.setdefault(r["method"], []).append(r["seconds"])
    print(f"Mean SDRi (dB) over seeds {sorted({r['seed'] for r in rows})}; n = runs per cell\n")
    print("| case | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for case in CASES:
        cells = [table.get((case, m), []) for m in methods]
        print(
            f"| {case} | "
            + " | ".join(f"{np.mean(c):.2f} ({len(c)})" if c else "" for c in cells)
            + " |"
        )
    means = [np.mean([np.mean(table[(c, m)]) for c in CASES if (c, m) in table]) for m in methods]
    print("| **mean** | " + " | ".join(f"**{v:.2f}**" for v in means) + " |")
    print("\nWorst seed minus mean (dB)\n")
    print("| case | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for case in CASES:
        cells = [table.get((case, m), []) for m in methods]
        print(
            f"| {case} | "
            + " | ".join(f"{min(c) - np.mean(c):.2f}" if c else "" for c in cells)
            + " |"
        )
    print("\nSeconds per run (mean over cases and seeds)\n")
    print("| " + " | ".join(methods) + " |")
    print("|---" * len(methods) + "|")
    print("| " + " | ".join(f"{np.mean(secs[m]):.1f}" for m in methods) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--methods",
        default="refine,refine@8192,refine@11000,pra",
        help="methods to run; with --report, the methods to show (all: every one)",
    )
    parser.add_argument("--refine-iter", type=int, default=100)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--checkpoints", default="10,30,100", help="iterations (study)")
    parser.add_argument("--floors", default="0.01,0.001", help="weight floors (study)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        shown = {int(s) for s in args.seeds.split(",")}
        report(args.out, shown, args.methods.split(",") if args.methods != "all" else None)
        return
    with threadpool_limits(limits=1):
        seeds = [int(s) for s in args.seeds.split(",")]
        run(
            seeds,
            args.methods.split(","),
            args.refine_iter,
            args.cases.split(","),
            args.out,
            tuple(int(v) for v in args.checkpoints.split(",")),
            tuple(float(v) for v in args.floors.split(",")),
        )


if __name__ == "__main__":
    main()
