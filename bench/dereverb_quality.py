"""Joint dereverberation and separation on the dev cases: SDRi against taps, delay and STFT.

    python bench/dereverb_quality.py run --seeds 0 1 2            # appends to out/dereverb.jsonl
    python bench/dereverb_quality.py run --wpe 10 20 40 --seeds 0 # WPE (nara_wpe) -> ilrma cascade
    python bench/dereverb_quality.py table                        # markdown table of the runs
    python bench/dereverb_quality.py timing                       # seconds per iteration vs taps

Every run goes through :func:`ilrma_cli.pipeline.separate` with today's defaults
(``DEFAULT_ILRMA``) except the STFT and ``taps``/``delay``; the outputs at mic 0
(projection back through ``W^{-1}``) are scored with :func:`ilrma_cli.metrics.score`
(SDRi, best permutation) against the early images ``earlyK.wav`` at mic 0 where the case
has them and against the full images ``srcK.wav``. Each run is one JSON line (resumable:
a line already present is skipped), with the engine's seconds per iteration.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from ilrma_cli.metrics import score
from ilrma_cli.pipeline import separate
from ilrma_cli.settings import DEFAULT_ILRMA, SeparationSettings
from ilrma_cli.stft import StftConfig

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"
OUT = ROOT / "out" / "dereverb.jsonl"
REVERBERANT = ("arctic_2src_rt600", "arctic_2src_rt900", "arctic_4mic_2src_rt600")
DRY = ("arctic_2src_rt250", "music_guitar_synth_rt300")
STFTS = {
    "1024/256": StftConfig(1024, 256, "hann"),
    "2048/512": StftConfig(2048, 512, "hann"),
    "4096/1024": StftConfig(4096, 1024, "hann"),  # today's default at 16 kHz
}
# WPE (the cascade baseline) runs at the STFT of nara_wpe's examples scaled to 16 kHz;
# the separation after it at the row's STFT. The row's delay is then WPE's.
WPE_STFT = StftConfig(1024, 256, "hann")


def load_case(name: str) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """``(mix (n_mic, n), {"early"|"full": refs (n_src, n) at mic 0}, rate)``."""
    folder = DEV / name
    mix, rate = sf.read(folder / "mix.wav", dtype="float64", always_2d=True)
    n_src = json.loads((folder / "case.json").read_text())["n_src"]
    refs = {
        "full": np.stack([sf.read(folder / f"src{k}.wav")[0][:, 0] for k in range(1, n_src + 1)])
    }
    if (folder / "early1.wav").exists():
        refs["early"] = np.stack(
            [sf.read(folder / f"early{k}.wav")[0][:, 0] for k in range(1, n_src + 1)]
        )
    return mix.T, refs, rate


def wpe_front_end(mix: np.ndarray, taps: int, delay: int) -> np.ndarray:
    """nara_wpe's offline WPE (numpy, 3 iterations) on ``mix`` ``(n_mic, n)`` at ``WPE_STFT``."""
    from nara_wpe.wpe import wpe

    from ilrma_cli.stft import istft
    from ilrma_cli.stft import stft as forward

    spec = forward(mix, WPE_STFT, np.complex128)  # (n_mic, n_freq, n_frames)
    out = wpe(spec.transpose(1, 0, 2), taps=taps, delay=delay, iterations=3)
    return istft(out.transpose(1, 0, 2), mix.shape[1], WPE_STFT)


def one_run(
    case: str, stft_name: str, taps: int, delay: int, seed: int, wpe_taps: int
) -> dict[str, object]:
    """Separate one case with one setting and seed; its scores and times."""
    mix, refs, rate = load_case(case)
    n_src = refs["full"].shape[0]
    stft = STFTS[stft_name]
    ilrma = replace(DEFAULT_ILRMA, taps=taps, delay=delay, spatial="rank1")
    settings = SeparationSettings(
        stft=stft,
        ilrma=ilrma,
        seed=seed,
        n_sources=n_src if n_src < mix.shape[0] else None,
        restarts=1,
    )
    start = time.perf_counter()
    observed = wpe_front_end(mix, wpe_taps, delay) if wpe_taps else mix
    separation = separate(observed, settings, rate=rate)
    seconds = time.perf_counter() - start
    estimates = separation.sources
    row: dict[str, object] = {
        "case": case,
        "stft": stft_name,
        "taps": taps,
        "delay": delay,
        "wpe_taps": wpe_taps,
        "seed": seed,
        "seconds": seconds,
        "s_per_iter": separation.seconds["ilrma"] / (ilrma.n_iter + ilrma.iva_iter),
    }
    for kind, ref in refs.items():
        sdri = score(ref, estimates, mix[0]).sdri
        assert sdri is not None  # the mixture was scored
        row[f"sdri_{kind}"] = float(np.mean(sdri))
    return row


def key(row: dict[str, object]) -> tuple[object, ...]:
    return tuple(row[k] for k in ("case", "stft", "taps", "delay", "wpe_taps", "seed"))


def done_rows() -> list[dict[str, object]]:
    if not OUT.exists():
        return []
    return [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]


def run_grid(args: argparse.Namespace) -> None:
    done = {key(row) for row in done_rows()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    settings = [(0, 2)] if args.wpe else [(0, 2)] * (0 in args.taps)
    settings += [(t, d) for t in args.taps if t for d in args.delays] if not args.wpe else []
    wpe_list = args.wpe or [0]
    for stft_name in args.stfts:
        for case in args.cases:
            for taps, delay in settings:
                for wpe_taps in wpe_list:
                    for wpe_delay in args.delays if wpe_taps else [delay]:
                        for seed in args.seeds:
                            wanted = (case, stft_name, taps, wpe_delay, wpe_taps, seed)
                            if wanted in done:
                                continue
                            row = one_run(case, stft_name, taps, wpe_delay, seed, wpe_taps)
                            with OUT.open("a") as handle:
                                handle.write(json.dumps(row) + "\n")
                            print(json.dumps(row), flush=True)


def table() -> str:
    """Mean SDRi over seeds per case and setting (early | full image), seconds per iteration."""
    groups: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for row in done_rows():
        groups.setdefault(key(row)[:5], []).append(row)
    cases = [c for c in REVERBERANT + DRY if any(k[0] == c for k in groups)]
    settings = sorted({k[1:] for k in groups}, key=lambda s: (s[0], s[3], s[1], s[2]))
    lines = [
        "| STFT | setting | " + " | ".join(cases) + " | s/iter (2 mics) |",
        "|---|---|" + "---|" * (len(cases) + 1),
    ]
    for stft_name, taps, delay, wpe_taps in settings:
        name = f"WPE {wpe_taps} taps D={delay} -> ilrma" if wpe_taps else f"L={taps} D={delay}"
        if not wpe_taps and taps == 0:
            name = "L=0 (today)"
        cells, per_iter = [], []
        for case in cases:
            rows = groups.get((case, stft_name, taps, delay, wpe_taps), [])
            if not rows:
                cells.append("")
                continue
            parts = [
                f"{np.mean([r[f'sdri_{kind}'] for r in rows]):.2f}"
                for kind in ("early", "full")
                if f"sdri_{kind}" in rows[0]
            ]
            cells.append(" / ".join(parts) + f" (n={len(rows)})")
            if case != "arctic_4mic_2src_rt600":
                per_iter += [float(r["s_per_iter"]) for r in rows]  # type: ignore[arg-type]
        timing = f"{np.median(per_iter):.3f}" if per_iter else ""
        lines.append(f"| {stft_name} | {name} | " + " | ".join(cells) + f" | {timing} |")
    return "\n".join(lines)


def timing(case: str, stft_name: str, n_iter: int, repeats: int) -> str:
    """Seconds per iteration against taps (median gap between the engine's callbacks, best
    of ``repeats``; setup and the final outputs excluded), one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from ilrma_cli.engine import run
    from ilrma_cli.stft import stft as forward

    mix, _, _ = load_case(case)
    obs = forward(mix, STFTS[stft_name], np.complex128)
    lines = [
        f"{case}, {stft_name}, {obs.shape[0]} mics, {obs.shape[2]} frames, {n_iter} iterations:",
        "| taps | backend | s/iter | x taps=0 compiled |",
        "|---|---|---|---|",
    ]
    settings = [(0, "compiled"), (0, "reference"), (2, "reference"), (3, "reference")]
    settings.append((5, "reference"))
    settings.append((10, "reference"))
    base = None
    for taps, backend in settings:
        config = replace(DEFAULT_ILRMA, n_iter=n_iter, iva_iter=0, taps=taps, spatial="rank1")
        best = np.inf
        for _ in range(repeats):
            stamps: list[float] = []
            with threadpool_limits(limits=1, user_api="blas"):
                run(
                    obs,
                    config,
                    backend=backend,
                    callback=lambda *_, stamps=stamps: stamps.append(time.perf_counter()),
                )
            best = min(best, float(np.median(np.diff(stamps))))
        base = best if base is None else base
        lines.append(f"| {taps} | {backend} | {best:.4f} | {best / base:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    grid = sub.add_parser("run")
    grid.add_argument("--cases", nargs="+", default=list(REVERBERANT + DRY))
    grid.add_argument("--stfts", nargs="+", default=list(STFTS), choices=list(STFTS))
    grid.add_argument("--taps", nargs="+", type=int, default=[0, 2, 5, 10])
    grid.add_argument("--delays", nargs="+", type=int, default=[1, 2, 3])
    grid.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    grid.add_argument("--wpe", nargs="+", type=int, default=[], help="WPE taps (cascade)")
    sub.add_parser("table")
    times = sub.add_parser("timing")
    times.add_argument("--case", default="arctic_2src_rt600")
    times.add_argument("--stft", default="1024/256", choices=list(STFTS))
    times.add_argument("--n-iter", type=int, default=10)
    times.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.command == "run":
        run_grid(args)
    elif args.command == "timing":
        print(timing(args.case, args.stft, args.n_iter, args.repeats))
    else:
        print(table())


if __name__ == "__main__":
    main()
