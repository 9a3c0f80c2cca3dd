"""Separation-quality benchmark: settings x simulated cases, SDR improvement per setting.

    python bench/quality.py                      # the default list of settings
    python bench/quality.py --settings reference,default --cases speech
    python bench/quality.py --settings n_fft=2048+hop=512+n_basis=4+seeds=0.1
    python bench/quality.py --set reverb         # dev rooms at 600-900 ms: early and full image

Cases come from :mod:`cases` (pyroomacoustics rooms, seeded, cached under
``out/quality-cases``). Each setting runs through :func:`ilrma_cli.pipeline.separate`
exactly as the CLI does, for each of its seeds; SDR is BSS Eval (fast_bss_eval,
512-tap distortion filter, best permutation) of the estimates at the reference
mic 0 against the source images there; SDRi subtracts the SDR of the mixture
channel itself. Prints mean/median/min SDRi over all (case, seed) runs and the
mean seconds per run, and writes every number to ``out/quality.json``.

``--set reverb`` runs the reverberant dev cases of ``../shared/data/dev`` (RT60 600-900 ms,
with early images ``earlyK.wav``: the source convolved with the room response cut 50 ms
after the direct path) and scores every run against both references: the early image
(what a dereverberating method aims at) and the full image. Its settings are today's
defaults, joint dereverberation (``--taps 2``, and ``taps=2+delay=2`` at 4096/1024, the
setting of docs/DEREVERB.md) and, as the baseline to beat, a WPE front end (nara_wpe,
offline, 10 taps, delay 3, 3 iterations at 1024/256) followed by today's defaults.
Writes ``out/quality-reverb.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as case_lib  # noqa: E402

from ilrma_cli.engine import ILRMAConfig  # noqa: E402
from ilrma_cli.pipeline import separate  # noqa: E402
from ilrma_cli.settings import SeparationSettings, auto_spatial  # noqa: E402
from ilrma_cli.stft import StftConfig, istft, stft  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REF_STFT = StftConfig(4096, 2048, "hann")
DEFAULT = SeparationSettings()
RANK1 = replace(DEFAULT.ilrma, spatial="rank1")
SEEDS = (0, 1, 2)
# The reverberant dev cases with early images (``--set reverb``).
REVERB_CASES = ("arctic_2src_rt600", "arctic_2src_rt900", "arctic_4mic_2src_rt600")
# WPE (the cascade baseline) at the STFT of nara_wpe's examples scaled to 16 kHz.
WPE_STFT = StftConfig(1024, 256, "hann")
WPE_DELAY, WPE_ITERATIONS = 3, 3


@dataclass(frozen=True)
class Setting:
    """What one row runs: the separation settings, its seeds, and ``wpe`` taps of a WPE
    front end before the separation (0: none)."""

    settings: SeparationSettings
    seeds: tuple[int, ...] = SEEDS
    wpe: int = 0


def _at_4096(ilrma: ILRMAConfig = DEFAULT.ilrma) -> SeparationSettings:
    return replace(DEFAULT, stft=StftConfig(4096, 1024, "hann"), ilrma=ilrma)


# name -> setting. "reference" is the reference notebook / peers' usual setting; it and
# "rank1" are one run per seed, the others the CLI's restarts.
SETTINGS: dict[str, Setting] = {
    "reference": Setting(SeparationSettings(REF_STFT, ilrma=ILRMAConfig(n_basis=10), restarts=1)),
    "ref-2bases": Setting(SeparationSettings(REF_STFT, ilrma=ILRMAConfig(n_basis=2), restarts=1)),
    "default": Setting(DEFAULT),
    # --set reverb: joint dereverberation and the WPE cascade
    # the defaults before the full-rank one (and before the mean of 5 restarts)
    "rank1": Setting(replace(DEFAULT, ilrma=RANK1, restarts=1)),
    "taps2": Setting(replace(DEFAULT, ilrma=replace(RANK1, taps=2, delay=2))),
    "default-4096": Setting(_at_4096()),
    "taps2-4096": Setting(_at_4096(replace(RANK1, taps=2, delay=2))),
    "wpe10": Setting(DEFAULT, wpe=10),
    "dereverb4": Setting(replace(DEFAULT, dereverb=4)),  # --dereverb 4
}
SETS = {
    "sim": ("reference", "ref-2bases", "rank1", "default"),
    "reverb": ("default", "wpe10", "dereverb4", "taps2-4096", "default-4096", "taps2"),
}


def parse(spec: str) -> Setting:
    """A setting by name, or ``key=value`` pairs joined by ``+`` on top of the default.

    Keys: ``n_fft``, ``hop``, ``restarts`` (default 1, not the CLI's), ``seeds`` (``0.1.2``), ``wpe`` (WPE taps),
    ``dereverb``, ``dereverb_delay`` and ``dereverb_n_fft`` (the ``--dereverb`` stage)
    and any :class:`ILRMAConfig` field (``n_basis``, ``update``, ``model``, ``dof``,
    ``iva_iter``, ``n_iter``, ``taps``, ``delay``), e.g. ``n_fft=2048+hop=512+model=t+dof=4``.
    """
    if spec in SETTINGS:
        return SETTINGS[spec]
    setting = SETTINGS["default"]
    settings, seeds = setting.settings, setting.seeds
    fields = dict(item.split("=", 1) for item in spec.split("+"))
    if "n_fft" in fields:
        n_fft = int(fields.pop("n_fft"))
        hop = int(fields.pop("hop", n_fft // 4))
        settings = replace(settings, stft=StftConfig(n_fft, hop, "hann"))
    if "seeds" in fields:
        seeds = tuple(int(v) for v in fields.pop("seeds").split("."))
    # One run per seed unless given: the studies spread the seeds themselves.
    settings = replace(settings, restarts=int(fields.pop("restarts", 1)))
    wpe = int(fields.pop("wpe", 0))
    for key in ("dereverb", "dereverb_delay", "dereverb_n_fft"):  # the --dereverb stage
        if key in fields:
            settings = replace(settings, **{key: int(fields.pop(key))})
    types = {"model": str, "update": str, "dof": float, "spatial": str}
    ilrma = {k: types.get(k, int)(v) for k, v in fields.items()}
    if "spatial" not in ilrma and ("model" in ilrma or "taps" in ilrma):  # as the CLI resolves it
        model, taps = ilrma.get("model", settings.ilrma.model), ilrma.get("taps", 0)
        ilrma["spatial"] = auto_spatial(str(model), int(taps))
    return Setting(replace(settings, ilrma=replace(settings.ilrma, **ilrma)), seeds, wpe)


def sdr_improvement(refs: np.ndarray, estimates: np.ndarray, mix_ref: np.ndarray) -> float:
    """Mean over sources of SDR(estimate) - SDR(mixture channel), best permutation;
    ``refs`` ``(n_src, n_samples)`` at mic 0."""
    import fast_bss_eval

    sdr = fast_bss_eval.sdr(refs, estimates)
    sdr_mix = fast_bss_eval.sdr(refs, np.stack([mix_ref] * len(refs)))
    return float(np.mean(sdr - sdr_mix))


def wpe_front_end(mix: np.ndarray, taps: int) -> np.ndarray:
    """nara_wpe's offline WPE (numpy) on ``mix`` ``(n_mic, n_samples)`` at ``WPE_STFT``."""
    from nara_wpe.wpe import wpe

    spec = stft(mix, WPE_STFT, np.complex128)  # (n_mic, n_freq, n_frames)
    out = wpe(spec.transpose(1, 0, 2), taps=taps, delay=WPE_DELAY, iterations=WPE_ITERATIONS)
    return istft(out.transpose(1, 0, 2), mix.shape[1], WPE_STFT)


def run_setting(setting: Setting, cases: list[case_lib.Case]) -> list[dict[str, object]]:
    """SDRi (full image; early image where the case has it) and seconds of every (case, seed)
    run. The seconds include the WPE front end."""
    rows = []
    for case in cases:
        n_sources = case.n_sources if case.n_sources < case.mix.shape[0] else None
        for seed in setting.seeds:
            chosen = replace(setting.settings, seed=seed, n_sources=n_sources)
            start = time.perf_counter()
            observed = wpe_front_end(case.mix, setting.wpe) if setting.wpe else case.mix
            separation = separate(observed, chosen, rate=case_lib.RATE)
            seconds = time.perf_counter() - start
            row: dict[str, object] = {"case": case.spec.name, "seed": seed}
            row["sdri"] = sdr_improvement(case.images[:, 0], separation.sources, case.mix[0])
            if case.early is not None:
                row["sdri_early"] = sdr_improvement(case.early, separation.sources, case.mix[0])
            row.update(seconds=seconds, loss=float(separation.result.loss[-1]))
            rows.append(row)
            early = f" early {row['sdri_early']:6.2f} dB" if "sdri_early" in row else ""
            print(
                f"  {case.spec.name:24s} seed {seed}: {row['sdri']:6.2f} dB{early} "
                f"{seconds:6.1f} s",
                flush=True,
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


def summary(rows: list[dict[str, object]], key: str = "sdri") -> dict[str, float]:
    """Statistics of ``key`` (``sdri`` or ``sdri_early``) over the rows that have it."""
    rows = [r for r in rows if key in r]
    sdri = np.array([r[key] for r in rows], dtype=float)
    per_case: dict[str, list[float]] = {}
    for r in rows:
        per_case.setdefault(str(r["case"]), []).append(float(r[key]))  # type: ignore[arg-type]
    return {
        "mean": float(sdri.mean()),
        "median": float(np.median(sdri)),
        "min": float(sdri.min()),
        "worst_case_mean": float(min(np.mean(v) for v in per_case.values())),
        "seconds": float(np.mean([r["seconds"] for r in rows])),
    }


def _summaries(rows: list[dict[str, object]]) -> dict[str, object]:
    """``summary`` (full image) and, when some case has early images, ``summary_early``."""
    out: dict[str, object] = {"summary": summary(rows)}
    if any("sdri_early" in r for r in rows):
        out["summary_early"] = summary(rows, "sdri_early")
    return out


def table(results: dict[str, object], names: list[str]) -> str:
    """Plain-text summary, one line per setting (early-image columns when known)."""
    early = any("summary_early" in results[n] for n in names)  # type: ignore[operator]
    extra = f" {'early':>6s} {'e.wrst':>6s}" if early else ""
    lines = [
        f"{'setting':22s} {'mean':>6s} {'median':>6s} {'min':>6s} {'worst':>6s}{extra} {'s/run':>6s}"
    ]
    for name in names:
        s = results[name]["summary"]  # type: ignore[index]
        e = results[name].get("summary_early")  # type: ignore[attr-defined]
        cells = f" {e['mean']:6.2f} {e['worst_case_mean']:6.2f}" if e else " " * len(extra)
        lines.append(
            f"{name:22s} {s['mean']:6.2f} {s['median']:6.2f} {s['min']:6.2f} "
            f"{s['worst_case_mean']:6.2f}{cells if early else ''} {s['seconds']:6.1f}"
        )
    return "\n".join(lines)


def markdown(results: dict[str, object], names: list[str]) -> str:
    """Summary table and per-case mean SDRi table (markdown); ``early / full`` cells where the
    case has early images."""
    early = any("summary_early" in results[n] for n in names)  # type: ignore[operator]
    lines = [
        "| setting | mean | median | min | worst case (mean over seeds) |"
        + (" early: mean | early: worst case |" if early else "")
        + " s/run |",
        "|---|---|---|---|---|" + ("---|---|" if early else "") + "---|",
    ]
    for name in names:
        s = results[name]["summary"]  # type: ignore[index]
        e = results[name].get("summary_early")  # type: ignore[attr-defined]
        cells = (
            (f" {e['mean']:.2f} | {e['worst_case_mean']:.2f} |" if e else " - | - |")
            if early
            else ""
        )
        lines.append(
            f"| {name} | {s['mean']:.2f} | {s['median']:.2f} | {s['min']:.2f} "
            f"| {s['worst_case_mean']:.2f} |{cells} {s['seconds']:.1f} |"
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
            rows = [r for r in results[name]["rows"] if r["case"] == case]  # type: ignore[index]
            parts = [
                f"{np.mean([r[key] for r in rows]):.2f}"
                for key in ("sdri_early", "sdri")
                if rows and key in rows[0]
            ]
            cells.append(" / ".join(parts) or "-")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_cases(case_set: str, only: str) -> list[case_lib.Case]:
    """The simulated cases (``sim``) or the reverberant dev cases (``reverb``) whose names
    contain ``only``."""
    if case_set == "reverb":
        specs = [s for s in case_lib.dev_specs() if s.name in REVERB_CASES and only in s.name]
        return [case_lib.load(s) for s in specs]
    specs = [s for s in case_lib.CASES if only in s.name]  # type: ignore[misc]
    return [case_lib.load(s, ROOT / "out" / "quality-cases") for s in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="case_set", choices=sorted(SETS), default="sim")
    parser.add_argument(
        "--settings", default=None, help="comma-separated names or specs (see parse); "
        "default: the set's own list"
    )  # fmt: skip
    parser.add_argument("--cases", default="", help="only cases whose name contains this")
    parser.add_argument("--n-iter", type=int, default=None, help="override iterations")
    parser.add_argument("--out", type=Path, default=None, help="default out/quality[-SET].json")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--report", action="store_true", help="only print the tables of --out, run nothing"
    )
    args = parser.parse_args()
    suffix = "" if args.case_set == "sim" else f"-{args.case_set}"
    out: Path = args.out or ROOT / "out" / f"quality{suffix}.json"
    results: dict[str, object] = json.loads(out.read_text()) if out.exists() else {}
    names = args.settings.split(",") if args.settings else list(SETS[args.case_set])
    if args.report:
        print(report(results, names, args.markdown))
        return
    cases = load_cases(args.case_set, args.cases)
    for name in [n for n in names if "~r" not in n]:
        setting = parse(name)
        if args.n_iter is not None:
            ilrma = replace(setting.settings.ilrma, n_iter=args.n_iter)
            setting = replace(setting, settings=replace(setting.settings, ilrma=ilrma))
        print(f"{name}:", flush=True)
        rows = run_setting(setting, cases)
        settings = {**setting.settings.to_dict(), "wpe_taps": setting.wpe}
        results[name] = {"settings": settings, "rows": rows, **_summaries(rows)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(report(results, names, args.markdown))


def report(results: dict[str, object], names: list[str], as_markdown: bool) -> str:
    """The tables; a name ``setting~rN`` is ``--restarts N`` simulated from ``setting``'s seeds."""
    for name in [n for n in names if "~r" in n]:
        base, n = name.rsplit("~r", 1)
        rows = best_of(results[base]["rows"], int(n))  # type: ignore[index]
        results[name] = {"rows": rows, **_summaries(rows)}
    return markdown(results, names) if as_markdown else table(results, names)


if __name__ == "__main__":
    main()
