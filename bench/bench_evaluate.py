"""Time BSS Eval backends: mir_eval, fast_bss_eval (if installed) and ``ilrma_cli.metrics``.

Prints a markdown table: median CPU seconds over ``--runs`` runs (after one warm-up), the
speed-up over mir_eval, and the largest |difference| in dB from mir_eval over SDR, SIR, SAR.
Signals: the dry utterances of ../shared/data/sources, concatenated, convolved with synthetic
room responses; estimates leak the other sources and carry noise (SDR near 10 dB).
BLAS runs on one thread and time is the process's CPU time: on an idle machine it equals the
wall time, on a shared one it does not depend on what else runs.
"""

from __future__ import annotations

import os

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import mir_eval.separation  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from ilrma_cli.metrics import score  # noqa: E402

SOURCES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sources"
RATE = 16000
CASES = ((2, 18.0), (2, 60.0), (4, 18.0))  # (n_sources, seconds)


def make_signals(n_sources: int, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References and estimates ``(n_sources, n_samples)``: reverberant speech, leaky estimates."""
    rng = np.random.default_rng(seed)
    dry = [sf.read(path, dtype="float64")[0] for path in sorted(SOURCES.glob("*.wav"))]
    if not dry:
        raise SystemExit(f"no dry utterances in {SOURCES}")
    n_samples = int(seconds * RATE)
    decay = np.exp(-np.arange(4000) / (0.05 * RATE))  # about 0.35 s to -60 dB
    references = []
    for source in range(n_sources):
        order = np.roll(np.arange(len(dry)), source)
        speech = np.concatenate([dry[i] for i in order] * (n_samples // 30000 + 1))[:n_samples]
        room = rng.standard_normal(len(decay)) * decay
        room[0] = 4.0
        references.append(np.convolve(speech, room)[:n_samples])
    references = np.stack(references)
    leakage = np.eye(n_sources) + 0.25 * rng.standard_normal((n_sources, n_sources))
    estimates = leakage @ references
    estimates += 0.05 * np.std(references) * rng.standard_normal(references.shape)
    return references, estimates


def run_mir_eval(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(mir_eval.separation.bss_eval_sources(references, estimates)[:3])


def run_fast_bss_eval(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    import fast_bss_eval

    return np.array(fast_bss_eval.bss_eval_sources(references, estimates)[:3])


def run_ours(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    scores = score(references, estimates, backend="fast")
    return np.array([scores.sdr, scores.sir, scores.sar])


def timed(
    function: Callable[[np.ndarray, np.ndarray], np.ndarray], args: tuple, runs: int
) -> tuple[float, np.ndarray]:
    """Median CPU seconds over ``runs`` calls after a warm-up, and the result."""
    result = function(*args)
    times = []
    for _ in range(runs):
        start = time.process_time()
        function(*args)
        times.append(time.process_time() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per backend (median)")
    runs = parser.parse_args().runs
    backends = {"ilrma fast": run_ours}
    try:
        import fast_bss_eval  # noqa: F401

        backends = {"fast_bss_eval": run_fast_bss_eval, **backends}
    except ImportError:
        print("fast_bss_eval not installed (pip install -e '.[bench]'): column skipped\n")
    header = ["case", "mir_eval s"]
    for name in backends:
        header += [f"{name} s", "speed-up", "max dB diff"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n_sources, seconds in CASES:
        signals = make_signals(n_sources, seconds)
        reference_time, reference = timed(run_mir_eval, signals, runs)
        row = [f"{n_sources} sources, {seconds:g} s", f"{reference_time:.3f}"]
        for function in backends.values():
            elapsed, values = timed(function, signals, runs)
            difference = np.max(np.abs(values - reference))
            row += [f"{elapsed:.3f}", f"{reference_time / elapsed:.1f}x", f"{difference:.1e}"]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"\nCPU seconds, median of {runs} runs after a warm-up; 16 kHz; one thread")


if __name__ == "__main__":
    main()
