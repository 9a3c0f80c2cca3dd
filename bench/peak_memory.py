"""Child process: one whole separation of a wav file, then its peak RSS as JSON on stdout.

``python bench/peak_memory.py METHOD IN.wav OUT_DIR N_FFT HOP N_ITER``: read ->
STFT -> separate (with projection back) -> ISTFT -> write, the way a command-line
run does it through the library. Reports ``VmHWM`` (peak resident set), the
resident size after the imports (``baseline``), and the complex64 STFT size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import separate  # noqa: E402

from ilrma_cli.memory import estimate_peak_bytes  # noqa: E402
from ilrma_cli.stft import StftConfig, istft, stft  # noqa: E402


def status_bytes(field: str) -> int:
    """A size from ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` peak since exec).

    ``ru_maxrss`` is not used: across fork + exec it keeps the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main(method: str, path: str, out_dir: str, n_fft: int, hop: int, n_iter: int) -> None:
    import pyroomacoustics  # noqa: F401  (imports count in the baseline for every method)
    import ssspy  # noqa: F401

    baseline = status_bytes("VmRSS")
    config = StftConfig(n_fft, hop)
    single = "single" in method
    wave, rate = sf.read(path, dtype="float32" if single else "float64", always_2d=True)
    n_samples = wave.shape[0]
    # One channel at a time, so that a complex128 spectrogram never exists in single precision.
    first = stft(wave[:, :1].T, config)[0]
    obs = np.empty((wave.shape[1],) + first.shape, np.complex64 if single else np.complex128)
    obs[0] = first
    del first
    for c in range(1, wave.shape[1]):
        obs[c] = stft(wave[:, c : c + 1].T, config)[0]
    del wave
    stft_bytes = obs.size * np.dtype(np.complex64).itemsize
    images = separate(method, obs, n_iter)
    del obs
    for n, image in enumerate(images):
        sf.write(Path(out_dir) / f"src{n}.wav", istft(image[None], n_samples, config)[0], rate)
    peak = status_bytes("VmHWM")
    estimate = None
    if method.startswith("ilrma"):
        precision = "single" if single else "double"
        estimate = estimate_peak_bytes(len(images), n_samples, n_fft, hop, 2, precision)
    row = {"peak": peak, "baseline": baseline, "stft_bytes": stft_bytes, "estimate": estimate}
    print(json.dumps(row))


if __name__ == "__main__":
    name, wav, out, fft, step, iters = sys.argv[1:7]
    main(name, wav, out, int(fft), int(step), int(iters))
