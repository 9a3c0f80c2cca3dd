"""Separation-quality benchmark: settings x simulated cases, SDR improvement per setting.

    python bench/quality.py                      # the default list of settings
    python bench/quality.py --settings reference,default --cases speech
    python bench/quality.py --settings n_fft=2048+hop=512+n_basis=4+seeds=0.1

Cases come from :mod:`cases` (pyroomacoustics rooms, seeded, cached under
``out/quality-cases``). Each setting runs through :func:`ilrma_cli.pipeline.separate`
exactly as the CLI does, for each of its seeds; SDR is BSS Eval (fast_bss_eval,
512-tap distortion filter, best permutation) of the estimates at the reference
mic 0 against the source images there; SDRi subtracts the SDR of the mixture
channel itself. Prints mean/median/min SDRi over all (case, seed) runs and the
mean seconds per run, and writes every number to ``out/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402

from ilrma_cli.engine import ILRMAConfig  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings  # noqa: E402
from ilrma_cli.stft import StftConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REF_STFT = StftConfig(4096, 2048, "hann")
DEFAULT = SeparationSettings()

# name -> (settings, seeds). "reference" is the reference notebook / peers' usual setting.
SETTINGS: dict[str, tuple[SeparationSettings, tuple[int, ...]]] = {
    "reference": (SeparationSettings(stft=REF_STFT, ilrma=ILRMAConfig(n_basis=10)), (0, 1, 2)),
    "ref-2bases": (SeparationSettings(stft=REF_STFT, ilrma=ILRMAConfig(n_basis=2)), (0, 1, 2)),
    "default": (DEFAULT, (0, 1, 2)),
}


def parse(spec: str) -> tuple[SeparationSettings, tuple[int, ...]]:
    """A setting by name, or ``key=value`` pairs joined by ``+`` on top of the default.

    Keys: ``n_fft``, ``hop``, ``restarts``, ``seeds`` (``0.1.2``)
    and any :class:`ILRMAConfig` field (``n_basis``, ``update``, ``model``, ``dof``,
    ``iva_iter``, ``n_iter``), e.g. ``n_fft=2048+hop=512+model=t+dof=4``.
    """
    if spec in SETTINGS:
        return SETTINGS[spec]
    settings, seeds = SETTINGS["default"]
    fields = dict(item.split("=", 1) for item in spec.split("+"))
    if "n_fft" in fields:
        n_fft = int(fields.pop("n_fft"))
        hop = int(fields.pop("hop", n_fft // 4))
        settings = replace(settings, stft=StftConfig(n_fft, hop, "hann"))
    if "seeds" in fields:
        seeds = tuple(int(v) for v in fields.pop("seeds").split("."))
    if "restarts" in fields:
        settings = replace(settings, restarts=int(fields.pop("restarts")))
    types = {"model": str, "update": str, "dof": float}
    ilrma = {k: types.get(k, int)(v) for k, v in fields.items()}
    return replace(settings, ilrma=replace(settings.ilrma, **ilrma)), seeds


def sdr_improvement(images: np.ndarray, estimates: np.ndarray, mix_ref: np.ndarray) -> float:
    """Mean over sources of SDR(estimate) - SDR(mixture channel), best permutation."""
    import fast_bss_eval

    refs = images[:, 0]
    sdr = fast_bss_eval.sdr(refs, estimates)
    sdr_mix = fast_bss_eval.sdr(refs, np.stack([mix_ref] * len(refs)))
    return float(np.mean(sdr - sdr_mix))


def run_setting(
    settings: SeparationSettings, seeds: tuple[int, ...], cases: list[case_lib.Case]
) -> list[dict[str, object]]:
    """SDRi and seconds of every (case, seed) run."""
    rows = []
    for case in cases:
        n_sources = case.n_sources if case.n_sources < case.mix.shape[0] else None
        for seed in seeds:
            chosen = replace(settings, seed=seed, n_sources=n_sources)
            start = time.perf_counter()
            separation = separate(case.mix, chosen, rate=case_lib.RATE)
            seconds = time.perf_counter() - start
            sdri = sdr_improvement(case.images, separation.sources, case.mix[0])
            loss = float(separation.result.loss[-1])
            rows.append(
                {
                    "case": case.spec.name,
                    "seed": seed,
                    "sdri": sdri,
                    "seconds": seconds,
                    "loss": loss,
                }
            )
            print(
                f"  {case.spec.name:24s} seed {seed}: {sdri:6.2f} dB {seconds:6.1f} s", flush=True
            )
    return rows


def best_of(rows: list[dict[str, object]], n: int) -> list[dict[str, object]]:
    """What ``--restarts n`` gives, from single runs: per case, consecutive seed groups of ``n``,
    the run with the lowest final loss (seconds add up). Seeds must be consecutive."""
    out = []
    for case in dict.fromkeys(str(r["case"]) for r in rows):
        runs = sorted((r for r in rows if r["case"] == case), key=lambda r: int(r["seed"]))  # type: ignore[arg-type]
        for lo in range(0, len(runs) - n + 1, n):
            group = runs[lo : lo + n]
            best = min(group, key=lambda r: float(r["loss"]))  # type: ignore[arg-type]
            seconds = sum(float(r["seconds"]) for r in group)  # type: ignore[arg-type]
            out.append({**best, "seed": group[0]["seed"], "seconds": seconds})
    return out


def summary(rows: list[dict[str, object]]) -> dict[str, float]:
    sdri = np.array([r["sdri"] for r in rows], dtype=float)
    per_case: dict[str, list[float]] = {}
    for r in rows:
        per_case.setdefault(str(r["case"]), []).append(float(r["sdri"]))  # type: ignore[arg-type]
    return {
        "mean": float(sdri.mean()),
        "median": float(np.median(sdri)),
        "min": float(sdri.min()),
        "worst_case_mean": float(min(np.mean(v) for v in per_case.values())),
        "seconds": float(np.mean([r["seconds"] for r in rows])),
    }


def table(results: dict[str, object], names: list[str]) -> str:
    """Plain-text summary, one line per setting."""
    lines = [f"{'setting':22s} {'mean':>6s} {'median':>6s} {'min':>6s} {'worst':>6s} {'s/run':>6s}"]
    for name in names:
        s = results[name]["summary"]  # type: ignore[index]
        lines.append(
            f"{name:22s} {s['mean']:6.2f} {s['median']:6.2f} {s['min']:6.2f} "
            f"{s['worst_case_mean']:6.2f} {s['seconds']:6.1f}"
        )
    return "\n".join(lines)


def markdown(results: dict[str, object], names: list[str]) -> str:
    """Summary table and per-case mean SDRi table (markdown)."""
    lines = [
        "| setting | mean | median | min | worst case (mean over seeds) | s/run |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        s = results[name]["summary"]  # type: ignore[index]
        lines.append(
            f"| {name} | {s['mean']:.2f} | {s['median']:.2f} | {s['min']:.2f} "
            f"| {s['worst_case_mean']:.2f} | {s['seconds']:.1f} |"
        )
    cases: list[str] = []
    for name in names:
        for row in results[name]["rows"]:  # type: ignore[index]
            if row["case"] not in cases:
                cases.append(row["case"])
    lines += ["", "| case | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for case in cases:
        cells = []
        for name in names:
            values = [r["sdri"] for r in results[name]["rows"] if r["case"] == case]  # type: ignore[index]
            cells.append(f"{np.mean(values):.2f}" if values else "-")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help="comma-separated names or specs (see parse)"
    )
    parser.add_argument("--cases", default="", help="only cases whose name contains this")
    parser.add_argument("--n-iter", type=int, default=None, help="override iterations")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "quality.json")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--report", action="store_true", help="only print the tables of --out, run nothing"
    )
    args = parser.parse_args()
    results: dict[str, object] = json.loads(args.out.read_text()) if args.out.exists() else {}
    names = args.settings.split(",")
    if args.report:
        print(report(results, names, args.markdown))
        return
    specs = [s for s in case_lib.CASES if args.cases in s.name]
    cases = [case_lib.load(s, ROOT / "out" / "quality-cases") for s in specs]
    for name in [n for n in names if "~r" not in n]:
        settings, seeds = parse(name)
        if args.n_iter is not None:
            settings = replace(settings, ilrma=replace(settings.ilrma, n_iter=args.n_iter))
        print(f"{name}:", flush=True)
        rows = run_setting(settings, seeds, cases)
        results[name] = {"settings": settings.to_dict(), "rows": rows, "summary": summary(rows)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    print(report(results, names, args.markdown))


def report(results: dict[str, object], names: list[str], as_markdown: bool) -> str:
    """The tables; a name ``setting~rN`` is ``--restarts N`` simulated from ``setting``'s seeds."""
    for name in [n for n in names if "~r" in n]:
        base, n = name.rsplit("~r", 1)
        rows = best_of(results[base]["rows"], int(n))  # type: ignore[index]
        results[name] = {"rows": rows, "summary": summary(rows)}
    return markdown(results, names) if as_markdown else table(results, names)


if __name__ == "__main__":
    main()
