"""Time per iteration against the thread count (``--threads``), and against pyroomacoustics.

Inputs: a 2-channel dev case tiled to 60 s and 10 min, and the 4-microphone case
tiled to 10 min (4 sources, the determined case), at the automatic STFT of
``ilrma separate`` (16 kHz). For each input and thread count (1, 2, ..., all usable
cores) the engine runs ILRMA (IP, 4 bases, no IVA start) in this process and the
median time between iteration callbacks is taken (one BLAS thread, as in ``ilrma
separate``), the thread counts interleaved over ``--repeats`` rounds. pyroomacoustics' ``bss.ilrma`` (its own BLAS threads)
runs 1 and 3 iterations on the same STFT after a warm-up run; its time per iteration
is the median over two rounds of the difference over 2. A second table does the same
for the full-rank model (FastMNMF2 iterations, 16 bases, as many sources as mics, from
pyroomacoustics' kind of start) against pyroomacoustics' ``bss.fastmnmf2`` on the
2-channel inputs. Prints markdown tables; the outputs of every thread count are
checked to be identical. Needs the ``bench`` extra; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import dev_case, read, tile  # noqa: E402
from sections import replace_section  # noqa: E402

from ilrma_cli.cores import usable_cores  # noqa: E402
from ilrma_cli.engine import ILRMAConfig, run  # noqa: E402
from ilrma_cli.engine.fullrank_compiled import iterate_compiled  # noqa: E402
from ilrma_cli.engine.fullrank_refine import random_model  # noqa: E402
from ilrma_cli.engine.observation import unit_power_features  # noqa: E402
from ilrma_cli.engine.threads import set_threads  # noqa: E402
from ilrma_cli.settings import auto_stft  # noqa: E402
from ilrma_cli.stft import stft  # noqa: E402

RATE = 16000
FULLRANK_BASIS = 16


def inputs() -> dict[str, np.ndarray]:
    two = dev_case("arctic_2src_rt250")[0]
    four = read(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"
                / "arctic_4mic_2src_rt600" / "mix.wav")  # fmt: skip
    return {"60 s, 2 ch": tile(two, 60), "10 min, 2 ch": tile(two, 600),
            "10 min, 4 ch": tile(four, 600)}  # fmt: skip


def ilrma_seconds_per_iteration(obs: np.ndarray, n_iter: int) -> tuple[float, np.ndarray]:
    """Median seconds between iteration callbacks, and the demixing matrices."""
    stamps: list[float] = []

    def callback(iteration: int, loss: float) -> bool:
        stamps.append(time.perf_counter())
        return False

    config = ILRMAConfig(n_iter=n_iter, iva_iter=0, record_loss=False)
    with threadpool_limits(limits=1, user_api="blas"):  # as ilrma separate runs the engine
        result = run(obs, config, seed=0, callback=callback)
    return statistics.median(np.diff(stamps)), result.demix


def fullrank_seconds_per_iteration(obs: np.ndarray, n_iter: int) -> tuple[float, np.ndarray]:
    """Median seconds between full-rank iteration callbacks, and the diagonalisers."""
    feats = unit_power_features(obs)[0]
    n_mics, n_freq, n_frames = obs.shape
    rng = np.random.default_rng(0)
    model = random_model(n_freq, n_frames, n_mics, n_mics, FULLRANK_BASIS, rng)
    stamps: list[float] = []

    def callback(iteration: int, loss: float) -> bool:
        stamps.append(time.perf_counter())
        return False

    with threadpool_limits(limits=1, user_api="blas"):  # as ilrma separate runs the engine
        iterate_compiled(feats, model, n_iter, callback, record_loss=False)
    return statistics.median(np.diff(stamps)), model.diagonaliser


def pyroomacoustics_seconds_per_iteration(obs: np.ndarray, fullrank: bool = False) -> float:
    import pyroomacoustics as pra

    x = np.ascontiguousarray(obs.transpose(2, 1, 0))

    def timed(n_iter: int) -> float:
        start = time.perf_counter()
        if fullrank:
            pra.bss.fastmnmf2(x, n_iter=n_iter, n_components=FULLRANK_BASIS)
        else:
            pra.bss.ilrma(x, n_iter=n_iter, n_components=4)
        return time.perf_counter() - start

    timed(1)  # warm up (lazy imports, caches)
    return statistics.median((timed(3) - timed(1)) / 2 for _ in range(2))


def table(
    title: str, signals: dict[str, np.ndarray], counts: list[int], args: argparse.Namespace,
    fullrank: bool,
) -> list[str]:  # fmt: skip
    """The markdown lines of one model's table (printed as they come)."""
    header = ["input", "STFT", *[f"{n} thr (ms/it)" for n in counts]]
    header += [f"speed-up {counts[-1]} thr", "pyroomacoustics (ms/it)", "ratio to pra"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    print("\n".join(lines))
    measure = fullrank_seconds_per_iteration if fullrank else ilrma_seconds_per_iteration
    for name, signal in signals.items():
        config = auto_stft(RATE, n_samples=signal.shape[1])
        obs = stft(signal, config)
        seconds: dict[int, list[float]] = {n: [] for n in counts}
        outputs: dict[int, np.ndarray] = {}
        for _ in range(args.repeats):
            for n in counts:
                set_threads(n)
                value, outputs[n] = measure(obs, args.n_iter)
                seconds[n].append(value)
        if any(not np.array_equal(outputs[n], outputs[1]) for n in counts):
            raise SystemExit(f"{name}: the thread counts gave different results")
        median = {n: statistics.median(v) for n, v in seconds.items()}
        peer = pyroomacoustics_seconds_per_iteration(obs, fullrank)
        best = median[counts[-1]]
        row = [name, f"{config.n_fft}/{config.hop}", *[f"{1e3 * median[n]:.1f}" for n in counts],
               f"{median[1] / best:.2f}x", f"{1e3 * peer:.0f}", f"{peer / best:.0f}x"]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-iter", type=int, default=8)
    parser.add_argument("--markdown", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()
    cores = usable_cores()
    counts = sorted({1, 2, cores} if cores >= 2 else {1})
    intro = (f"{platform.machine()}, {cores} usable cores; thread counts {counts}; medians over "
             f"{args.repeats} rounds of {args.n_iter} iterations")  # fmt: skip
    print(intro + "\n")
    signals = inputs()
    lines = table("ILRMA (rank 1, 4 bases)", signals, counts, args, fullrank=False)
    two = {name: signal for name, signal in signals.items() if "2 ch" in name}
    lines += ["", *table("Full rank (FastMNMF2, 16 bases)", two, counts, args, fullrank=True)]
    if args.markdown:
        body = "\n".join(["## Threads on one mixture (bench/threads.py)", "",
                          (__doc__ or "").split("\n\n", 1)[1].strip().replace("\n", " "),
                          "", intro + ".", "", *lines])  # fmt: skip
        replace_section("threads", body)


if __name__ == "__main__":
    main()
