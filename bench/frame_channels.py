"""Does the automatic frame's minimum frame count need to grow with the channels? (full-rank default)

``auto_stft`` picks the longest of 4096/1024, 8192/2048, 11000/2750 (16 kHz) that leaves
at least 52 frames (``n_samples / hop``); it was fitted with rank-1 ILRMA. The default
now refines with the full-rank model (M x M spatial covariances per frequency), which
may need more frames as the mics M grow. This reads the ``bench/grid.py`` rows of the
three frames at the CLI defaults (``today``, ``f8192``, ``f11000``: plain ``n_fft+hop``
specs, which resolve to the full-rank default) and compares, per case and per group,
the current rule with rules whose minimum frame count depends on M:

* ``const``: ``c`` whatever M (the current rule is ``c = 52``);
* ``linear``: ``c * M / 2`` (``c = 52``: 26 M);
* ``sqrt``: ``c * sqrt(M / 2)``;
* ``split``: 52 for 2 mics, ``c`` for 3 mics or more;
* ``sources``: ``c * n_sources / 2`` (the sources separated, the PCA dimension of the
  rank-1 stage when fewer than the mics).

    python bench/grid.py run --cases dev,varied,sim,multi,edge --settings today,f8192,f11000 \\
        --seeds 0-2 --jobs 1 --out out/study/frame_channels.jsonl
    python bench/grid.py run --cases multi,edge,arctic_4mic,v07,v08,v09,speech3_m3,music3_m3,\\
speech2_m3,mixed2_m4 --settings today,f8192,f11000 --seeds 3-4 --jobs 1 \\
        --out out/study/frame_channels.jsonl
    python bench/frame_channels.py --seeds 0-2     # every case: tables and the sweeps
    python bench/frame_channels.py --seeds 0-4     # the cases run on seeds 0-4 (M >= 3, edge)

Every family and parameter prints, per subset, the mean and worst per-case change against
the current rule and the count of cases losing more than 0.3 dB (per-case seed means).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import OUT, _load, case_specs, group_of, read_rows, seed_list  # noqa: E402

from ilrma_cli.settings import auto_stft  # noqa: E402

FRAMES = (4096, 8192, 11000)  # quarter hop; the candidates of auto_stft at 16 kHz
GROUPS = ("dev", "varied", "sim", "multi", "edge")
Rule = Callable[[int, int, int], int]  # (n_samples, n_mics, n_sources) -> n_fft


def spec_of(n_fft: int) -> str:
    return f"n_fft={n_fft}+hop={n_fft // 4}"


def threshold_rule(min_frames: Callable[[int, int], float]) -> Rule:
    """The longest of :data:`FRAMES` with ``n_samples / hop >= min_frames(n_mics, n_sources)``."""

    def pick(n_samples: int, n_mics: int, n_sources: int) -> int:
        chosen = FRAMES[0]
        for n_fft in FRAMES[1:]:
            if n_samples / (n_fft // 4) >= min_frames(n_mics, n_sources):
                chosen = n_fft
        return chosen

    return pick


def current(n_samples: int, n_mics: int, n_sources: int) -> int:
    """What ``ilrma_cli.settings.auto_stft`` picks today (no channel dependence)."""
    return auto_stft(case_lib.RATE, n_samples=n_samples).n_fft


FAMILIES: dict[str, Callable[[float], Callable[[int, int], float]]] = {
    "const": lambda c: lambda m, n: c,
    "linear": lambda c: lambda m, n: c * m / 2,
    "sqrt": lambda c: lambda m, n: c * np.sqrt(m / 2),
    "split": lambda c: lambda m, n: 52.0 if m <= 2 else c,
    "sources": lambda c: lambda m, n: c * n / 2,
}


def table(rows: list[dict], specs: list, seeds: list[int]) -> list[dict]:
    """Per case with every frame run on every seed: facts and mean SDRi per frame."""
    index: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        if r["seed"] in seeds:
            index.setdefault((r["case"], r["spec"]), {})[r["seed"]] = float(r["sdri"])
    out = []
    for spec in specs:
        case = _load(spec)[0]
        per = {n: index.get((spec.name, spec_of(n)), {}) for n in FRAMES}
        if not all(len(per[n]) == len(seeds) for n in FRAMES):
            continue
        n_samples = case.mix.shape[1]
        out.append(
            {
                "case": spec.name,
                "group": group_of(spec.name),
                "n_mics": case.mix.shape[0],
                "n_src": case.images.shape[0],
                "seconds": n_samples / case_lib.RATE,
                "n_samples": n_samples,
                "frames": {n: n_samples / (n // 4) for n in FRAMES},
                "sdri": {n: float(np.mean(list(per[n].values()))) for n in FRAMES},
            }
        )
    return out


def compare(cases: list[dict], rule: Rule) -> dict[str, float]:
    """Mean and worst per-case change of ``rule`` against the current rule, all cases."""
    diffs = [
        c["sdri"][rule(c["n_samples"], c["n_mics"], c["n_src"])]
        - c["sdri"][current(c["n_samples"], c["n_mics"], c["n_src"])]
        for c in cases
    ]
    return {
        "mean": float(np.mean(diffs)),
        "worst": float(np.min(diffs)),
        "n_lose": int(sum(d < -0.3 for d in diffs)),
        "n_change": int(sum(d != 0 for d in diffs)),
    }


def print_cases(cases: list[dict], proposed: Rule, label: str) -> None:
    print(
        "| case | group | M | src | length | frames 4096 / 8192 / 11000 | SDRi 4096 | SDRi 8192 "
        f"| SDRi 11000 | best | current | {label} | {label} - current |"
    )
    print("|---" * 13 + "|")
    for c in sorted(cases, key=lambda c: (c["n_mics"] > 2, c["group"], c["case"])):
        now, new = (
            current(c["n_samples"], c["n_mics"], c["n_src"]),
            proposed(c["n_samples"], c["n_mics"], c["n_src"]),
        )
        best = max(FRAMES, key=lambda n: c["sdri"][n])
        frames = " / ".join(f"{c['frames'][n]:.0f}" for n in FRAMES)
        cells = [f"{c['sdri'][n]:.2f}" for n in FRAMES]
        print(
            f"| {c['case']} | {c['group']} | {c['n_mics']} | {c['n_src']} | {c['seconds']:.1f} s "
            f"| {frames} | " + " | ".join(cells) + f" | {best} | {now} | {new} "
            f"| {c['sdri'][new] - c['sdri'][now]:+.2f} |"
        )


def print_summary(cases: list[dict], rules: dict[str, Rule]) -> None:
    """Per rule and group (and M = 2 / M >= 3): mean SDRi, and mean / worst change."""
    subsets = {g: [c for c in cases if c["group"] == g] for g in GROUPS}
    subsets["M = 2"] = [c for c in cases if c["n_mics"] == 2]
    subsets["M >= 3"] = [c for c in cases if c["n_mics"] >= 3]
    subsets["all"] = cases
    subsets = {k: v for k, v in subsets.items() if v}
    print("| rule | " + " | ".join(f"{k} ({len(v)})" for k, v in subsets.items()) + " |")
    print("|---" * (len(subsets) + 1) + "|")
    for name, rule in rules.items():
        cells = []
        for members in subsets.values():
            mean = np.mean(
                [c["sdri"][rule(c["n_samples"], c["n_mics"], c["n_src"])] for c in members]
            )
            d = compare(members, rule)
            cells.append(f"{mean:.2f} ({d['mean']:+.2f} / {d['worst']:+.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_sweeps(cases: list[dict]) -> None:
    """Each family over its parameter: mean / worst change against the current rule and the
    cases losing more than 0.3 dB, on all cases, the 2-mic ones and the 3-4-mic ones."""
    subsets = {
        "all": cases,
        "M = 2": [c for c in cases if c["n_mics"] == 2],
        "M >= 3": [c for c in cases if c["n_mics"] >= 3],
    }
    head = " | ".join(f"{k} ({len(v)}): mean / worst / n < -0.3" for k, v in subsets.items())
    for family, make in FAMILIES.items():
        print(f"\n{family} (c from 30 to 160, where the picks change)\n")
        print(f"| c | {head} |")
        print("|---" * (len(subsets) + 1) + "|")
        last = None
        for c in range(30, 161):
            rule = threshold_rule(make(c))
            picks = tuple(rule(x["n_samples"], x["n_mics"], x["n_src"]) for x in cases)
            if picks == last:
                continue
            last = picks
            cells = []
            for members in subsets.values():
                d = compare(members, rule) if members else None
                cells.append(f"{d['mean']:+.2f} / {d['worst']:+.2f} / {d['n_lose']}" if d else "-")
            print(f"| {c} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="dev,varied,sim,multi,edge")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--out", type=Path, default=OUT / "frame_channels.jsonl")
    parser.add_argument("--family", default="linear", choices=list(FAMILIES))
    parser.add_argument("--c", type=float, default=52.0, help="the proposed rule's parameter")
    args = parser.parse_args()
    cases = table(read_rows(args.out), case_specs(args.cases), seed_list(args.seeds))
    proposed = threshold_rule(FAMILIES[args.family](args.c))
    label = f"{args.family} {args.c:g}"
    print(f"SDRi (dB), mean over seeds {args.seeds}; {len(cases)} cases with every frame run\n")
    print_cases(cases, proposed, label)
    print()
    rules: dict[str, Rule] = {"current (52)": current, label: proposed}
    for family, c in (("linear", 52), ("sqrt", 52), ("const", 54), ("const", 58), ("sources", 37)):
        rules.setdefault(f"{family} {c:g}", threshold_rule(FAMILIES[family](c)))
    for name, n_fft in (("always 4096", 4096), ("always 8192", 8192), ("always 11000", 11000)):
        rules[name] = lambda s, m, k, n=n_fft: n
    best = {c["case"]: max(FRAMES, key=lambda n: c["sdri"][n]) for c in cases}
    by_name = {c["case"]: c for c in cases}
    print("mean SDRi (mean change / worst change against current), per group\n")
    print_summary(cases, rules)
    for members, name in ((cases, "all"), ([c for c in cases if c["n_mics"] >= 3], "M >= 3")):
        oracle = np.mean([by_name[c["case"]]["sdri"][best[c["case"]]] for c in members])
        print(f"\noracle (best frame per case), {name}: {oracle:.2f}")
    print_sweeps(cases)


if __name__ == "__main__":
    main()
