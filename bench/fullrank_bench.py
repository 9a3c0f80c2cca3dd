"""Seconds per full-rank (FastMNMF2) iteration: ours (compiled) vs pyroomacoustics' ``fastmnmf2``.

    nice -n 10 python bench/fullrank_bench.py              # 2 ch 10 s, 2 ch 60 s, 4 ch 10 s

Equal settings: STFT 4096/1024 at 16 kHz, as many sources as mics, 16 NMF bases, the same
observation. The time per iteration is ``(t(b) - t(a)) / (b - a)`` for runs of ``a`` and ``b``
iterations from the same start, so set-up (features, pyroomacoustics' outer products) is
left out; the median of ``--repeats`` such differences is reported, with one BLAS thread.
Times are process CPU times (both run on one thread), which other load on a shared
machine disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import DATA, read, tile  # noqa: E402

from ilrma_cli.engine.fullrank_compiled import iterate_compiled  # noqa: E402
from ilrma_cli.engine.fullrank_refine import random_model  # noqa: E402
from ilrma_cli.engine.observation import unit_power_features  # noqa: E402
from ilrma_cli.stft import StftConfig, stft  # noqa: E402

STFT = StftConfig(4096, 1024, "hann")
N_BASIS = 16
INPUTS = {
    "2 ch 10 s": ("arctic_2src_rt250", 10.0),
    "2 ch 60 s": ("arctic_2src_rt250", 60.0),
    "4 ch 10 s": ("arctic_4mic_2src_rt600", 10.0),
}


def ours(obs: np.ndarray) -> Callable[[int], float]:
    feats = unit_power_features(obs)[0]
    n_mics, n_freq, n_frames = obs.shape
    start = random_model(n_freq, n_frames, n_mics, n_mics, N_BASIS, np.random.default_rng(0))

    def timed(n_iter: int) -> float:
        model = start.copy()
        begin = time.process_time()
        iterate_compiled(feats, model, n_iter, record_loss=False)
        return time.process_time() - begin

    return timed


def pyroomacoustics(obs: np.ndarray) -> Callable[[int], float]:
    import pyroomacoustics as pra

    x = np.ascontiguousarray(obs.transpose(2, 1, 0))

    def timed(n_iter: int) -> float:
        np.random.seed(0)  # noqa: NPY002
        begin = time.process_time()
        pra.bss.fastmnmf2(x, n_iter=n_iter, n_components=N_BASIS)
        return time.process_time() - begin

    return timed


def per_iteration(timed: Callable[[int], float], a: int, b: int, repeats: int) -> float:
    timed(1)  # warm up (compiles or loads the compiled passes)
    return statistics.median((timed(b) - timed(a)) / (b - a) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inputs", default=",".join(INPUTS))
    args = parser.parse_args()
    print("| input | frames x bins | ours (ms/it) | pyroomacoustics (ms/it) | ratio |")
    print("|---|---|---|---|---|")
    with threadpool_limits(limits=1):
        for name in args.inputs.split(","):
            case, seconds = INPUTS[name]
            mix = tile(read(DATA / "dev" / case / "mix.wav"), seconds)
            obs = stft(mix, STFT)
            ours_s = per_iteration(ours(obs), 2, 12, args.repeats)
            pra_s = per_iteration(pyroomacoustics(obs), 1, 3, args.repeats)
            shape = f"{obs.shape[2]} x {obs.shape[1]}"
            print(
                f"| {name} | {shape} | {1e3 * ours_s:.1f} | {1e3 * pra_s:.0f} "
                f"| {pra_s / ours_s:.0f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
