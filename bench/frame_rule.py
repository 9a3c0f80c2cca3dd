"""Fit and check the frame-length rule of ``auto_stft`` on the study runs (``bench/grid.py``).

A rule picks, per case, one of the frame lengths the study ran (quarter hop): the longest
frame that still leaves at least ``min_frames`` frames, optionally capped at ``beta`` times
a blind RT60 estimate (:mod:`reverb`), never shorter than today's 200-ms frame. Its
parameters are fitted on one set of cases (highest mean SDRi over the set's per-case seed
means) and checked on the other, per case against today's rule.

    python bench/frame_rule.py --fit varied --check dev --seeds 0-2
    python bench/frame_rule.py --check-table dev,varied --seeds 0-4   # today vs auto_stft
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402
from grid import OUT, _load, case_specs, read_rows, seed_list  # noqa: E402
from reverb import blind_rt60  # noqa: E402

# Frame lengths (samples at 16 kHz, quarter hop) the rule may choose from, shortest first.
FRAMES = (4096, 8192, 11000)


def spec_of(n_fft: int) -> str:
    return f"n_fft={n_fft}+hop={n_fft // 4}"


def pick(n_samples: int, rt60: float, min_frames: float, beta: float | None) -> int:
    """The rule: the longest of :data:`FRAMES` with ``n_samples / hop >= min_frames`` and
    (with ``beta``) ``n_fft <= beta * rt60 * rate``; the shortest if none."""
    chosen = FRAMES[0]
    for n_fft in FRAMES[1:]:
        enough = n_samples / (n_fft // 4) >= min_frames
        dry = beta is not None and np.isfinite(rt60) and n_fft > beta * rt60 * case_lib.RATE
        if enough and not dry:
            chosen = n_fft
    return chosen


def case_table(specs: list, seeds: list[int], metric: str) -> dict[str, dict]:
    """Per case: n_samples, blind RT60, and the mean over seeds of ``metric`` per frame."""
    index: dict[tuple[str, str], list[float]] = {}
    for r in read_rows(OUT / "runs.jsonl"):
        if r["seed"] in seeds and r.get(metric) is not None:
            index.setdefault((r["case"], r["spec"]), []).append(float(r[metric]))
    out = {}
    for spec in specs:
        case = _load(spec)[0]
        means = {
            n: float(np.mean(index[(spec.name, spec_of(n))]))
            for n in FRAMES
            if len(index.get((spec.name, spec_of(n)), [])) == len(seeds)
        }
        if len(means) == len(FRAMES):
            out[spec.name] = {
                "n_samples": case.mix.shape[1],
                "rt60": blind_rt60(case.mix, case_lib.RATE),
                "sdri": means,
            }
    return out


def evaluate(table: dict[str, dict], min_frames: float, beta: float | None) -> tuple[float, float]:
    """Mean SDRi of the rule over the cases, and its worst loss against today's frame."""
    gains = []
    values = []
    for row in table.values():
        n_fft = pick(row["n_samples"], row["rt60"], min_frames, beta)
        values.append(row["sdri"][n_fft])
        gains.append(row["sdri"][n_fft] - row["sdri"][FRAMES[0]])
    return float(np.mean(values)), float(min(gains))


def fit(table: dict[str, dict], use_rt60: bool) -> tuple[float, float | None]:
    """The (min_frames, beta) of the highest mean SDRi; ties go to the more conservative rule."""
    best: tuple[float, float, float, float | None] | None = None
    betas: list[float | None] = list(np.arange(1.0, 6.01, 0.25)) if use_rt60 else [None]
    for min_frames in range(30, 121, 2):
        for beta in betas:
            mean, worst = evaluate(table, min_frames, beta)
            key = (round(mean, 3), worst, min_frames, beta)
            if best is None or key[:3] > best[:3]:
                best = key
    assert best is not None
    return best[2], best[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", default="varied")
    parser.add_argument("--check", default="dev")
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--metric", default="sdri")
    parser.add_argument("--min-frames", type=float, default=None, help="skip the fit: use this")
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--check-table", default="", help="only print check() for these cases")
    args = parser.parse_args()
    seeds = seed_list(args.seeds)
    if args.check_table:
        check(args.check_table, seeds)
        return
    fit_table = case_table(case_specs(args.fit), seeds, args.metric)
    check_table = case_table(case_specs(args.check), seeds, args.metric)
    rules: list[tuple[str, float, float | None]] = []
    if args.min_frames is not None:
        rules.append(("given", args.min_frames, args.beta))
    else:
        for use_rt60 in (False, True):
            min_frames, beta = fit(fit_table, use_rt60)
            rules.append(("frames + rt60" if use_rt60 else "frames", min_frames, beta))
    for label, min_frames, beta in rules:
        print(
            f"\nrule ({label}): min_frames {min_frames}, beta {beta}; {args.metric}, seeds {args.seeds}"
        )
        for name, table in ((f"fit: {args.fit}", fit_table), (f"check: {args.check}", check_table)):
            mean, worst = evaluate(table, min_frames, beta)
            today = np.mean([r["sdri"][FRAMES[0]] for r in table.values()])
            print(
                f"  {name}: mean {mean:.2f} (today {today:.2f}), worst gain vs today {worst:+.2f}"
            )
        print(
            "| case | blind RT60 | "
            + " | ".join(str(n) for n in FRAMES)
            + " | rule picks | rule - today |"
        )
        print("|---" * (len(FRAMES) + 4) + "|")
        for table in (fit_table, check_table):
            for case, row in table.items():
                n_fft = pick(row["n_samples"], row["rt60"], min_frames, beta)
                cells = " | ".join(f"{row['sdri'][n]:.2f}" for n in FRAMES)
                gain = row["sdri"][n_fft] - row["sdri"][FRAMES[0]]
                print(f"| {case} | {row['rt60']:.2f} | {cells} | {n_fft} | {gain:+.2f} |")


def check(selection: str, seeds: list[int]) -> None:
    """Markdown: per case, today's frame against the rule (``auto_stft``), images and early images."""
    from grid import concrete, group_of, per_case

    specs = case_specs(selection)
    rows = read_rows(OUT / "runs.jsonl")
    tables = {m: per_case(rows, specs, ["today", "rule"], seeds, m) for m in ("sdri", "sdri_early")}
    print(
        "| case | set | length | rule frame | today | rule | rule - today | early: today | rule | diff |"
    )
    print("|---" * 10 + "|")
    for spec in specs:
        case = _load(spec)[0]
        frame = concrete("rule", case).split("+")[0].removeprefix("n_fft=")
        cells = []
        for metric in ("sdri", "sdri_early"):
            today, rule = tables[metric][spec.name]["today"], tables[metric][spec.name]["rule"]
            if len(today) == len(rule) == len(seeds):
                a, b = float(np.mean(today)), float(np.mean(rule))
                cells += [f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}"]
            else:
                cells += ["-", "-", "-"]
        seconds = case.mix.shape[1] / case_lib.RATE
        print(
            f"| {spec.name} | {group_of(spec.name)} | {seconds:.1f} s | {frame} | "
            + " | ".join(cells)
            + " |"
        )


if __name__ == "__main__":
    main()
